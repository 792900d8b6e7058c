"""Writes reviews.jsonl: short product and film reviews labelled positive, negative or neutral,
for pipelines/sentiment.yaml. A fifth of them are mixed ("… but …"): the clause after "but"
decides the label. Deterministic (seeded); rerun it to change the data.

    python3 data/reviews/make_reviews.py
"""

import json
import pathlib
import random

random.seed(11)
SUBJECTS = [
    "the film", "this movie", "the sequel", "the book", "this novel", "the album", "the soundtrack",
    "the hotel", "our room", "the restaurant", "the meal", "the coffee", "this phone",
    "the battery", "the camera", "the laptop", "the keyboard", "the headphones", "the delivery",
    "customer service", "the app", "the update", "the show", "the concert", "the game",
]
OPINIONS = {
    "positive": [
        "was excellent", "was wonderful", "is great", "was superb", "is brilliant",
        "exceeded my expectations", "was a delight", "is fantastic", "works perfectly",
        "was really enjoyable", "is worth every penny", "made my day", "was not bad at all",
        "is highly recommended", "was lovely",
    ],
    "negative": [
        "was terrible", "was awful", "is disappointing", "was a waste of money", "is useless",
        "broke after a week", "was painfully slow", "is not good", "was boring",
        "let me down", "is overpriced", "was a disaster", "never worked", "was dreadful",
        "is not worth it",
    ],
    "neutral": [
        "was okay", "is average", "was fine I guess", "arrived on tuesday", "is what it is",
        "was as described", "is neither good nor bad", "comes in three colours",
        "was about what I expected", "is a standard model", "was released last year",
        "has a manual", "was mid", "is ordinary", "did the job",
    ],
}
OPENERS = ["", "", "", "honestly, ", "well, ", "so ", "overall ", "I think ", "in short, "]
CLOSERS = ["", "", "", ".", "!", " to be honest.", " overall.", " for the price.", " this time."]

rows = []
for i in range(900):
    label = ["positive", "negative", "neutral"][i % 3]
    text = random.choice(OPENERS)
    if random.random() < 0.2:
        other = random.choice([l for l in OPINIONS if l != label])
        text += random.choice(SUBJECTS) + " " + random.choice(OPINIONS[other]) + " but "
    text += random.choice(SUBJECTS) + " " + random.choice(OPINIONS[label]) + random.choice(CLOSERS)
    rows.append({"id": f"r{i:04d}", "text": text[0].upper() + text[1:], "label": label})

out = pathlib.Path(__file__).with_name("reviews.jsonl")
out.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(out, len(rows))
