// 財務の画面の言葉 / finance's words (the same keys in both, in the same order).
export default {
  ja: {
    home: "財務のホーム",
    homeTitle: "財務",
  },
  en: {
    home: "Finance home",
    homeTitle: "Finance",
  },
};
