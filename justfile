# Development tasks. `just --list` shows them.

# Run the quickstart pipeline (the README's first command).
quickstart:
    cargo run --release -- run pipelines/quickstart.yaml

# The whole test suite (the README's second command; CI runs the same).
test:
    cargo test --workspace

# Format, lint and test: what to run before committing.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace

# Regenerate the committed JSON Schema after changing the workflow types.
schema:
    cargo run -q -- schema > schemas/pipeline.schema.json

# Regenerate the bundled customer-support dataset (deterministic).
data:
    python3 scripts/gen_support_data.py

# Engine benchmark, side by side with DVC (installs DVC into bench/.venv).
bench:
    python3 bench/engine.py

# Data benchmark: collect + clean + split on 1,000,000 rows, side by side with pandas.
bench-data:
    python3 bench/data.py
