#!/usr/bin/env python3
"""Generates the bundled customer-support dataset: question/answer pairs as JSON Lines.

Deterministic (fixed seed): running it again writes byte-identical files. Planted on purpose, so
that the cleaning stages have something to do: exact duplicates, near duplicates (case, spacing,
punctuation), stock tickers like $ACME in the text, empty answers, very short noise lines.

    python3 scripts/gen_support_data.py            # writes data/support/*.jsonl
"""

import json
import random
from pathlib import Path

SEED = 20261126
OUT = Path(__file__).resolve().parent.parent / "data" / "support"

PRODUCTS = ["router", "smart plug", "thermostat", "doorbell camera", "mesh extender",
            "smart bulb", "security hub", "air purifier", "robot vacuum", "baby monitor"]
TICKERS = ["$ACME", "$GLOBX", "$INIT", "$UMBR", "$WAYN", "$STRK", "$CYBD"]

INTENTS = [
    ("How do I reset my {p}?",
     "Hold the reset button on the back of the {p} for 10 seconds until the light blinks, then set it up again in the app."),
    ("My {p} will not connect to Wi-Fi. What should I do?",
     "Make sure your network is 2.4 GHz, move the {p} closer to the router, and restart both devices."),
    ("How can I update the firmware on my {p}?",
     "Open the app, select the {p}, go to Settings > Firmware and tap Update. Keep it powered on until it finishes."),
    ("Is my {p} still under warranty?",
     "Every {p} has a two-year warranty from the date of purchase. Enter your serial number on the support page to check."),
    ("Can I return my {p}?",
     "Yes, you can return the {p} within 30 days. Start a return from your order history and print the free label."),
    ("Why is the light on my {p} blinking red?",
     "A blinking red light means the {p} lost its connection. Check your internet and restart the {p}."),
    ("How do I share access to my {p} with family?",
     "In the app, open the {p}, tap Share and enter the e-mail address of the person you want to invite."),
    ("The app says my {p} is offline.",
     "Unplug the {p} for 30 seconds, plug it back in and wait two minutes. If it stays offline, reconnect it to Wi-Fi."),
    ("What is the power consumption of the {p}?",
     "The {p} uses less than 5 W in normal operation and under 1 W on standby."),
    ("How do I change the name of my {p}?",
     "Open the app, select the {p}, tap the pencil icon next to its name and save the new name."),
]
OPENERS = ["", "Hi, ", "Hello! ", "Quick question: ", "Please help. ", "Hey team, "]
CLOSERS = ["", " Thanks!", " Thank you.", " Any ideas?", " I bought it last week."]


def noisy(text: str, rng: random.Random) -> str:
    """The same question, written carelessly: case, spacing and punctuation."""
    choice = rng.randrange(4)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return "  " + text.replace(" ", "  ") + "  "
    if choice == 2:
        return text.rstrip("?.!") + "!!"
    return text.lower()


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for i in range(3000):
        q, a = rng.choice(INTENTS)
        p = rng.choice(PRODUCTS)
        question = rng.choice(OPENERS) + q.format(p=p) + rng.choice(CLOSERS)
        answer = a.format(p=p)
        if rng.random() < 0.08:
            question += f" I also hold {rng.choice(TICKERS)} shares, does that matter?"
        if rng.random() < 0.05:
            answer += f" (Ticket mentioned {rng.choice(TICKERS)}.)"
        rows.append({"id": f"t{i:05d}", "question": question, "answer": answer})
    extra = []
    for r in rng.sample(rows, 240):  # exact duplicates
        extra.append(dict(r, id=r["id"] + "-dup"))
    for r in rng.sample(rows, 180):  # near duplicates
        extra.append(dict(r, id=r["id"] + "-near", question=noisy(r["question"], rng)))
    for i in range(40):  # empty answers and junk
        extra.append({"id": f"junk{i:03d}", "question": rng.choice(["?", "hi", "test", "asdf"]), "answer": ""})
    rows.extend(extra)
    rng.shuffle(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2
    for name, part in (("tickets-2025.jsonl", rows[:half]), ("tickets-2026.jsonl", rows[half:])):
        with open(OUT / name, "w", encoding="utf-8", newline="\n") as f:
            for r in part:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
