// 管理者の画面の言葉 / the administrator's words (the same keys in both, in the same order).
export default {
  ja: {
    home: "管理のホーム",
    homeTitle: "管理",
  },
  en: {
    home: "Admin home",
    homeTitle: "Administration",
  },
};
