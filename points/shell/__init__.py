"""The application shell: the composition root, the one part of ``points`` that may import every
package of the project (DESIGN §2).

=================  ==============================================================
module             what it wires
=================  ==============================================================
``wiring``         every package's tables (for Alembic) and scheduled jobs, in one
                   place: a new package (``redemption`` next) adds its own there
``schema``         Alembic: the metadata the migrations manage, ``upgrade``
``migrations``     the migrations themselves (they ship inside the wheel)
``scheduler``      APScheduler inside ``points serve``
``cli``            the ``points`` command
``city``           ``points demo``: the pilot city and its year of history, through the
                   services the API uses (``city_data`` its cast, ``city_record`` its
                   row, ``city_report`` what the demo prints)
``ledger_demo``    ``points ledger demo``: the chart of accounts on a few raw entries
=================  ==============================================================

The domain modules of ``points`` import nothing of the shell, nor ``issuers``, ``redemption``
or ``api``; ``api`` never imports the shell (its app factory is given an engine built by
``points.db``). ``make lint`` checks these directions with import-linter (``pyproject.toml``).
"""
