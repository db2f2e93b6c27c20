// 市役所窓口の画面の言葉 / the city counter's words (the same keys in both, in the same order).
export default {
  ja: {
    home: "窓口のホーム",
    homeTitle: "市役所窓口",
  },
  en: {
    home: "Counter home",
    homeTitle: "City counter",
  },
};
