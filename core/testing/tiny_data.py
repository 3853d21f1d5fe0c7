"""The tiny synthetic task files: a few dozen rows of each CS224N file, in exactly the released format.

Same names, headers, tab separation and quoting as the release (``ids-sst-train.csv``, …; Quora has
no test file), a leading unnamed index column (two in the test-student files), 25-hex-digit ids, and a
few of the release's quirks: fields quoted because they hold a ``"``, an SST train index with gaps, a
Quora dev row whose second question and label are empty (skipped with a warning). Labels follow the
words (a sentiment word per class, paraphrases for duplicates, shared words for similarity), so a tiny
encoder has something to learn. They are written when a test session first asks for them (the
``tiny_data_dir`` fixture), the same bytes every time, and never committed: files named as the release's
belong to the release alone. ``python -m core.testing.tiny_data FOLDER`` writes them into FOLDER.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

ROWS = {"train": 128, "dev": 32, "test": 32}  # per file: above the --limit of the tests (24; 120 for pretraining)

FILMS = ["film", "movie", "story", "script", "comedy", "thriller", "drama", "romance", "sequel", "documentary"]
PARTS = ["the acting", "the ending", "the dialogue", "the music", "the camera work", "the pacing", "the plot",
         "the lead performance", "the humour", "the final act"]
# SST's five classes, 0 very negative … 4 very positive: the words that say each
SENTIMENT = [
    ["awful", "dreadful", "painful to sit through", "a complete waste of time", "unwatchable"],
    ["dull", "tiresome", "flat", "forgettable", "a little too slow"],
    ["ordinary", "uneven", "neither good nor bad", "about what you would expect", "modest"],
    ["charming", "engaging", "lively", "pleasant", "well made"],
    ["wonderful", "brilliant", "a real triumph", "superb", "unforgettable"],
]
SST_FRAMES = [
    "The {film} is {word} , and {part} is {word2} .",
    "{Part} is {word} from start to finish .",
    "It 's a {film} whose {part_bare} feels {word} .",
    "A {word} {film} , with {part} {word2} as well .",
    "Even {part} ca n't change it : {word} .",
    "Honestly , this {film} is {word} .",
]
REVIEW_OPENINGS = ["I saw this {film} last week with a friend .", "I rented this {film} on a rainy Sunday .",
                   "My family watched this {film} together on holiday .", "I had heard a lot about this {film} ."]
REVIEW_BODY = ["{Part} was {word} , and {part2} was {word2} .", "I thought {part} was {word} .",
               "The first hour is {word} , and it stays that way .", "By the end I found the whole thing {word} .",
               "Compared with the book , this {film} is {word} .", "{Part} left me feeling that it was {word} ."]
REVIEW_CLOSINGS = ["I would {verdict} it to anyone .", "In short : {verdict} .", "My advice : {verdict} ."]
VERDICTS = [["not recommend", "skip it", "stay away"], ["recommend", "see it", "watch it twice"]]

TOPICS = ["python", "geometry", "the guitar", "spanish", "chess", "swimming", "public speaking", "cooking",
          "photography", "economics", "the piano", "machine learning", "french", "painting", "running"]
QUESTIONS = [  # pairs of ways to ask the same question about a topic
    ("How can I learn {topic} quickly?", "What is the fastest way to learn {topic}?"),
    ("What are the best books about {topic}?", "Which books should I read to understand {topic}?"),
    ("Is {topic} hard for beginners?", "How difficult is {topic} for a beginner?"),
    ("How do I get better at {topic}?", "What can I do to improve at {topic}?"),
    ("Why do people enjoy {topic}?", "What makes {topic} so enjoyable for people?"),
]
PEOPLE = ["A man", "A woman", "A child", "A dog", "An old man", "A young girl", "A cat", "A teenager"]
ACTIONS = ["is playing a guitar", "is riding a bicycle", "is cutting an onion", "is swimming in a lake",
           "is reading a book", "is running on the beach", "is cooking dinner", "is climbing a tree"]
PLACES = ["in the park", "at home", "on a stage", "near the river", "in the kitchen", "under the rain"]


def hex_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(100):025x}"


def capital(text: str) -> str:
    return text[0].upper() + text[1:]


def sst_sentence(rng: random.Random, label: int) -> str:
    part = rng.choice(PARTS)
    fields = {"film": rng.choice(FILMS), "word": rng.choice(SENTIMENT[label]), "word2": rng.choice(SENTIMENT[label]),
              "part": part, "Part": capital(part), "part_bare": part.removeprefix("the ")}
    return " " + rng.choice(SST_FRAMES).format(**fields)


def review(rng: random.Random, label: int) -> str:
    """A CFIMDB-like review of 40-120 words (longer than the tests' --max-length): binary sentiment."""
    words = SENTIMENT[rng.choice([0, 1] if label == 0 else [3, 4])]
    film = rng.choice(FILMS)
    sentences = [rng.choice(REVIEW_OPENINGS).format(film=film)]
    for _ in range(rng.randint(3, 8)):
        part, part2 = rng.sample(PARTS, 2)
        sentences.append(rng.choice(REVIEW_BODY).format(film=film, part=part, Part=capital(part), part2=part2,
                                                        word=rng.choice(words), word2=rng.choice(words)))
    sentences.append(rng.choice(REVIEW_CLOSINGS).format(verdict=rng.choice(VERDICTS[label])))
    text = " " + " ".join(sentences)
    if rng.random() < 0.3:
        text = text.replace(" . ", " .<br /><br />", 1)
    if rng.random() < 0.15:
        text = ' """' + text  # a quoted opening, as some released reviews have: the field is written quoted
    return text


def question_pair(rng: random.Random) -> tuple[str, str, str]:
    first, second = rng.sample(TOPICS, 2)
    asked = rng.choice(QUESTIONS)
    if rng.random() < 0.5:
        return asked[0].format(topic=first), asked[1].format(topic=first), "1.0"
    other = rng.choice(QUESTIONS)
    return asked[0].format(topic=first), other[rng.randint(0, 1)].format(topic=second), "0.0"


def similar_pair(rng: random.Random) -> tuple[str, str, str]:
    """Two scene descriptions and a 0-5 similarity: five for the same scene, less for each part changed."""
    scene = [rng.choice(PEOPLE), rng.choice(ACTIONS), rng.choice(PLACES)]
    other = list(scene)
    changed = rng.sample(range(3), rng.randint(0, 3))
    for slot in changed:
        other[slot] = rng.choice([x for x in (PEOPLE, ACTIONS, PLACES)[slot] if x != scene[slot]])
    score = max(0.0, 5.0 - 1.6 * len(changed) - rng.choice([0.0, 0.2, 0.4, 0.6]))
    return f"{' '.join(scene)}.", f"{' '.join(other)}.", f"{score:g}" if score % 1 else f"{score:.1f}"


def sst_rows(rng, split):
    return [(sst_sentence(rng, label), str(label)) for label in (rng.randrange(5) for _ in range(ROWS[split]))]


def cfimdb_rows(rng, split):
    return [(review(rng, label), str(label)) for label in (rng.randrange(2) for _ in range(ROWS[split]))]


def sst_like(name: str, header: list[str], make) -> dict[str, list[list[str]]]:
    """The three files of a one-sentence task: train (index with gaps, as SST's), dev, test-student."""
    rng = random.Random(name)
    files = {}
    for split in ("train", "dev"):
        rows, index = [], 0
        for text, label in make(rng, split):
            rows.append([str(index), hex_id(rng), text, label])
            index += 2 if split == "train" and rng.random() < 0.2 else 1
        files[f"ids-{name}-{split}.csv"] = [["", *header], *rows]
    test = [[str(n + 1), f"{float(n)}", hex_id(rng), text] for n, (text, _) in enumerate(make(rng, "test"))]
    files[f"ids-{name}-test-student.csv"] = [["0", "", "id", "sentence"], *test]
    return files


def pair_files(name: str, label: str, make, splits: tuple[str, ...]) -> dict[str, list[list[str]]]:
    """The files of a two-sentence task: a random original index, an id, both sentences, the label."""
    rng = random.Random(name)
    files = {}
    for split in splits:
        rows = [[str(rng.randrange(1, 400000)), hex_id(rng), *make(rng)] for _ in range(ROWS[split])]
        if split == "test":
            rows = [row[:-1] for row in rows]
        suffix = "test-student" if split == "test" else split
        header = ["", "id", "sentence1", "sentence2"] + ([] if split == "test" else [label])
        files[f"{name}-{suffix}.csv"] = [header, *rows]
    return files


def tiny_files() -> dict[str, list[list[str]]]:
    """File name -> rows (the header first) of every tiny file."""
    files = {**sst_like("sst", ["id", "sentence", "sentiment"], sst_rows),
             **sst_like("cfimdb", ["id", "sentence", "sentiment"], cfimdb_rows),
             **pair_files("quora", "is_duplicate", question_pair, ("train", "dev")),
             **pair_files("sts", "similarity", similar_pair, ("train", "dev", "test"))}
    quora_dev = files["quora-dev.csv"]
    quora_dev[7][3:] = ["", ""]  # as the release's: a row whose second question and label are empty
    quora_dev[3][2:] = ['Which is correct: "a university" or "an university"?',  # written quoted, quotes doubled
                        "How do I get better at chess?", "0.0"]
    return files


def write(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tiny_files().items():
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(rows)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m core.testing.tiny_data FOLDER")
    for path in write(Path(sys.argv[1])):
        print(path)
