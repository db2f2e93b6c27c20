"""One router per role (DESIGN §7). Each route parses, authorizes, calls one service, maps."""
