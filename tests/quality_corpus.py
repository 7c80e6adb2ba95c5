"""A deterministic generator of web-like documents for the quality filters' parity tests and
benchmark: prose, lists, navigation menus, repetitive spam, boilerplate (cookies, terms of use,
javascript, lorem ipsum), code, other languages, ellipsis and bullet lines, hashtags,
citations, tables, and real text from the Python documentation. Documents mix blocks of
several kinds, so their statistics spread across the filters' thresholds.

    from tests.quality_corpus import generate
    docs = generate(5000, seed=0)            # list of str, ~2,000 characters each
"""

from __future__ import annotations

import random

WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education data model pipeline quality filter market price energy music garden recipe "
    "travel hotel software update feature release version network security privacy account "
    "weather season river mountain island coffee bread chicken sauce flavour colour behaviour"
).split()
VERBS = ("is was are were has have had makes made takes took gives gave finds found tells told "
         "asks asked seems feels leaves calls keeps lets begins shows hears plays runs moves "
         "lives believes brings happens writes provides sits stands loses pays meets includes "
         "continues sets learns changes leads understands watches follows stops creates speaks "
         "reads allows adds spends grows opens walks wins offers remembers loves considers").split()
ADJS = ("good new first last long great little own other old right big high different small "
        "large next early young important few public bad same able local sure free better "
        "true whole real best easy strong special clear recent certain personal open red "
        "difficult available likely short single medical current wrong private past foreign "
        "fine common poor natural significant similar hot dead central happy serious ready "
        "simple left physical general environmental financial blue democratic dark various "
        "well-known long-term state-of-the-art up-to-date").split()
FUNCTION = ("the the the the a a an of of of to to and and in in that for with on at by from "
            "as this it its their our your his her").split()
NAMES = ["John", "Mary", "Dr. Smith", "Mr. Jones", "Mrs. Brown", "the U.S.", "the U.K.",
         "New York", "Paris", "Google", "Microsoft", "NASA", "St. Louis", "Jan. 5",
         "e.g. London", "i.e. Berlin", "O'Brien", "McDonald's", "AT&T", "COVID-19"]
CONTRACTIONS = ["don't", "can't", "won't", "it's", "I'm", "you're", "they've", "we'll",
                "isn't", "didn't", "doesn't", "that's", "there's", "let's", "cannot", "he'd",
                "John's", "people's", "Don't", "It's"]
GERMAN = ("der die das und ist nicht mit von für auf den dem ein eine zu sich auch über nach "
          "Straße Größe schön Mädchen Übung können müssen Bücher Häuser Käse Frühstück Grüße "
          "Wetter heute morgen Stadt Land Fluss Berg arbeiten spielen lesen schreiben").split()
FRENCH = ("le la les et est pas avec de pour sur un une du des à été être avoir très où "
          "café élève garçon français château forêt hôpital naïf Noël déjà voilà ça "
          "maison ville pays travail année jour temps homme femme enfant").split()
RUSSIAN = ("и в не на я быть он с что а по это она этот к но они мы как из у который то "
           "за свой весь год от так о для ты же все тот мочь вы человек такой его сказать "
           "только или ещё бы себя один как уже до время если сам когда другой").split()
CHINESE = list("的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会"
               "自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手"
               "十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此"
               "实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因"
               "重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太")
CODE = [
    "def main(argv):\n    parser = argparse.ArgumentParser()\n    args = parser.parse_args(argv)"
    "\n    for i in range(10):\n        print(f\"{i}: {args}\")\n    return 0\n",
    "function init() {\n  var x = document.getElementById('app');\n  x.innerHTML = '<b>hi</b>';"
    "\n  return x;\n}\n",
    "SELECT id, name FROM users WHERE age > 18 ORDER BY name;\n",
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }\n",
    "x = [a.b for a in items if a.ok]  # comprehension\nresult = self.__dict__['x'].get(None)\n",
    "<div class=\"nav\"><a href=\"/home\">Home</a> | <a href=\"/about\">About</a></div>\n",
]
BOILERPLATE = [
    "This website uses cookies to improve your experience.",
    "By continuing you agree to our Terms of Use and Privacy Policy.",
    "Please enable JavaScript in your browser to view this page.",
    "We use cookies. Read our cookie policy for details.",
    "Copyright © 2024 Example Inc. All rights reserved.",
    "Subscribe to our newsletter",
    "Share this: Facebook | Twitter | Email",
    "Click here to read more",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "Javascript is required for the comment form to work properly.",
]
MENU = ["Home", "About us", "Contact", "Blog", "Products", "Services", "FAQ", "Login",
        "Sign up", "Search", "Careers", "Press", "Help", "Sitemap", "Cart (0)", "Menu"]
BADWORDS = ["sex", "porn", "nude", "escort", "xxx", "damn"]


def _real_paragraphs() -> list[str]:
    """Paragraphs of real English text shipped with Python (pydoc topics), if available."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - stripped Python installs
        return []
    paras = []
    for text in topics.values():
        for p in text.split("\n\n"):
            p = p.strip()
            if 80 < len(p) < 1500:
                paras.append(p)
    return sorted(paras)


class _Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.real = _real_paragraphs()

    def word(self) -> str:
        r = self.rng.random()
        if r < 0.40:
            return self.rng.choice(FUNCTION)
        if r < 0.70:
            return self.rng.choice(WORDS)
        if r < 0.82:
            return self.rng.choice(VERBS)
        if r < 0.93:
            return self.rng.choice(ADJS)
        if r < 0.96:
            return self.rng.choice(CONTRACTIONS)
        if r < 0.98:
            return self.rng.choice(NAMES)
        return str(self.rng.choice([1999, 2024, 42, 3.14, "1,000", "10-20", "50%", "$5", "5km"]))

    def sentence(self) -> str:
        rng = self.rng
        words = [self.word() for _ in range(rng.randint(4, 22))]
        if rng.random() < 0.25:
            k = rng.randrange(1, len(words))
            words[k] = words[k] + ","
        if rng.random() < 0.08:
            k = rng.randrange(len(words) - 1)
            words[k] = "(" + words[k]
            words[k + 1] = words[k + 1] + ")"
        if rng.random() < 0.05:
            words.insert(rng.randrange(len(words)), "\u2014")
        text = " ".join(words)
        text = text[0].upper() + text[1:]
        end = rng.choices([".", "?", "!", "...", "", ":", ".\"", " [1].", "…"],
                          [70, 6, 4, 3, 5, 2, 2, 2, 1])[0]
        if end == ".\"":
            text = "\"" + text
        return text + end

    def prose(self, sentences: int) -> str:
        return " ".join(self.sentence() for _ in range(sentences))

    def block(self, kind: str) -> str:
        rng = self.rng
        if kind == "prose":
            return self.prose(rng.randint(2, 7))
        if kind == "bullets":
            mark = rng.choice(["•", "-", "*", "1."])
            return "\n".join(f"{mark} {self.prose(1) if rng.random() < 0.5 else self.word()}"
                             for _ in range(rng.randint(3, 12)))
        if kind == "menu":
            return "\n".join(rng.sample(MENU, rng.randint(4, 12)))
        if kind == "spam":
            unit = self.prose(1) if rng.random() < 0.6 else " ".join(
                self.word() for _ in range(rng.randint(2, 5)))
            sep = rng.choice(["\n", " ", "\n\n"])
            return sep.join([unit] * rng.randint(3, 15))
        if kind == "boilerplate":
            return "\n".join(rng.sample(BOILERPLATE, rng.randint(1, 4)))
        if kind == "code":
            return "".join(rng.sample(CODE, rng.randint(1, 3)))
        if kind == "foreign":
            vocab = rng.choice([GERMAN, FRENCH, RUSSIAN])
            if rng.random() < 0.2:
                return "".join(rng.choice(CHINESE) for _ in range(rng.randint(40, 200))) + "。"
            return " ".join(" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 15)))
                            .capitalize() + "." for _ in range(rng.randint(2, 6)))
        if kind == "ellipsis":
            return "\n".join(self.prose(1).rstrip(".!?") + rng.choice(["...", "…", " ..."])
                             for _ in range(rng.randint(2, 8)))
        if kind == "hashtags":
            return " ".join(rng.choice(["#" + self.rng.choice(WORDS), self.word(), "##", "#1"])
                            for _ in range(rng.randint(10, 40)))
        if kind == "table":
            return "\n".join(" | ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(2, 6)))
                             for _ in range(rng.randint(3, 10)))
        if kind == "short_lines":
            return "\n".join(" ".join(self.word() for _ in range(rng.randint(1, 4)))
                             for _ in range(rng.randint(3, 15)))
        if kind == "real":
            return rng.choice(self.real) if self.real else self.prose(4)
        if kind == "url":
            return (f"See https://www.example.com/{self.word()}?id={rng.randint(1, 99)} or "
                    f"mail info@example.org for {self.prose(1)}")
        if kind == "badword":
            return self.prose(1)[:-1] + " " + rng.choice(BADWORDS) + "."
        raise ValueError(kind)

    KINDS = ["prose", "bullets", "menu", "spam", "boilerplate", "code", "foreign", "ellipsis",
             "hashtags", "table", "short_lines", "real", "url", "badword"]
    WEIGHTS = [40, 6, 4, 5, 5, 3, 4, 3, 2, 2, 4, 12, 2, 1]

    def document(self, target: int) -> str:
        rng = self.rng
        style = rng.random()
        if style < 0.08:  # tiny documents
            target = rng.randint(0, 300)
        main = rng.choices(self.KINDS, self.WEIGHTS)[0]
        blocks: list[str] = []
        size = 0
        while size < target:
            kind = main if rng.random() < 0.6 else rng.choices(self.KINDS, self.WEIGHTS)[0]
            b = self.block(kind)
            blocks.append(b)
            size += len(b) + 2
        sep = rng.choice(["\n\n", "\n", "\n\n", " \n"])
        text = sep.join(blocks)
        if style > 0.97:
            text = "  " + text + "\n\n"
        return text


def generate(n: int, seed: int = 0, chars: int = 2000) -> list[str]:
    """`n` documents of about `chars` characters (some much shorter), deterministic in
    `seed`."""
    gen = _Generator(seed)
    return [gen.document(chars) for _ in range(n)]


def write_jsonl(path: str, n: int, seed: int = 0, chars: int = 2000) -> None:
    """Write `generate(n, seed, chars)` as JSONL rows {"id", "text"}."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(generate(n, seed, chars)):
            fh.write(json.dumps({"id": str(i), "text": text}, ensure_ascii=False) + "\n")
