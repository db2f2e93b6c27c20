// 担当課の画面の言葉 / a department's words (the same keys in both, in the same order).
export default {
  ja: {
    home: "担当課のホーム",
    homeTitle: "担当課",
  },
  en: {
    home: "Department home",
    homeTitle: "Department",
  },
};
