"""ORPO, SimPO, CPO and KTO: each, started from the demo model, learns to prefer a variant of the animal -> sound
answers (each sound said twice) that the demo model ranks below the plain answer; the job's own evaluation measures
it on held-out pairs, as the History tab shows it."""

import time

import pytest

from mapping_data import mapping_rows, write_jsonl
from modelforge.config import JobConfig
from test_dpo import preference_pairs, train_in_process

OBJECTIVES = ("orpo", "simpo", "cpo", "kto")
# SimPO's beta scales a mean per-token log-probability, not a sum: its paper uses 2 to 2.5, not DPO's 0.1.
PREFERENCE = {"simpo": {"beta": 2.0}}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """The mapping task as preference pairs: the training pairs and the held-out pairs, as files."""
    train, held_out = mapping_rows()
    folder = tmp_path_factory.mktemp("pairs")
    return {
        "train": preference_pairs(train),
        "train_file": write_jsonl(folder / "train.jsonl", preference_pairs(train)),
        "held_out_file": write_jsonl(folder / "held-out.jsonl", preference_pairs(held_out)),
    }


def labelled_answers(pairs: list[dict]) -> list[dict]:
    """Unpaired rows: one answer per prompt, alternately the chosen one (good) and the rejected one (bad)."""
    return [
        {"prompt": pair["prompt"], "completion": pair["chosen"] if i % 2 else pair["rejected"], "label": bool(i % 2)}
        for i, pair in enumerate(pairs)
    ]


@pytest.mark.parametrize("strategy", OBJECTIVES)
def test_each_objective_raises_held_out_preference_accuracy_above_the_demo_models(strategy, engine, pairs, tmp_path):
    dataset = pairs["train_file"]
    if strategy == "kto":  # KTO's own data: single answers labelled good or bad, no prompt with both
        dataset = write_jsonl(tmp_path / "labelled.jsonl", labelled_answers(pairs["train"]))
    config = JobConfig(
        name=strategy,
        strategy=strategy,
        dataset=str(dataset),
        eval_dataset=str(pairs["held_out_file"]),
        training={"max_steps": 30, "batch_size": 16, "learning_rate": 3e-3, "save_steps": 100},
        preference=PREFERENCE.get(strategy, {}),
        evaluation={"max_new_tokens": 8},
    )
    started = time.perf_counter()
    job = train_in_process(engine, config)
    assert job.status == "completed", job.error
    accuracy = job.final_metrics["evaluation"]["metrics"]["preference_accuracy"]
    print(f"{strategy}: held-out preference accuracy {accuracy['base']:.2f} -> {accuracy['tuned']:.2f}, "
          f"30 steps, {time.perf_counter() - started:.0f} s")
    assert accuracy["tuned"] >= accuracy["base"] + 0.5, accuracy


def test_the_objectives_are_offered_by_the_finetune_tab_and_the_cli(engine):
    from modelforge import cli
    from test_strategies import dropdown_choices

    from modelforge.ui import finetune_tab

    assert set(OBJECTIVES) <= set(dropdown_choices(finetune_tab.build, engine)["Strategy"])
    for strategy in OBJECTIVES:
        assert cli.build_parser().parse_args(["validate", "rows.jsonl", "--strategy", strategy]).strategy == strategy


def test_kto_reads_labelled_answers_and_names_their_fields_when_they_are_missing(engine, tmp_path):
    from modelforge.errors import DatasetError
    from modelforge.strategies import STRATEGIES

    assert engine.dataset_fields("text-generation", "kto") == ("prompt", "completion", "label")
    rows = [{"prompt": "cat", "completion": "meow", "label": True}, {"prompt": "dog", "completion": "moo", "label": False}]
    rows += [{"prompt": "cow", "completion": "moo", "label": "true"}]  # CSV writes every value as text
    report = engine.validate_dataset(str(write_jsonl(tmp_path / "ok.jsonl", rows)), "text-generation", None,
                                     STRATEGIES["kto"].fields("text-generation"))
    assert report.ok and [record["label"] for record in report.records] == [True, False, True]

    bad = [{"prompt": "cat", "completion": "meow", "label": 1}, {"prompt": "dog", "completion": "woof", "label": "good"}]
    config = JobConfig(name="kto", strategy="kto", dataset=str(write_jsonl(tmp_path / "bad.jsonl", bad + rows)))
    with pytest.raises(DatasetError) as refused:
        engine.submit(config)
    assert "line 1: label must be true (a good answer) or false (a bad answer), got 1" in str(refused.value)
    assert "line 2: label must be true (a good answer) or false (a bad answer), got 'good'" in str(refused.value)

    answers_only = [{"prompt": row["prompt"], "completion": row["completion"]} for row in rows]
    config = JobConfig(name="kto", strategy="kto", dataset=str(write_jsonl(tmp_path / "unlabelled.jsonl", answers_only)))
    with pytest.raises(DatasetError, match="no column for label; the columns are: prompt, completion"):
        engine.submit(config)
    assert not engine.list_jobs()


def test_kto_reads_preference_pairs_as_a_good_and_a_bad_answer_each(engine, pairs, demo_model_path):
    from transformers import AutoTokenizer

    from modelforge.strategies import STRATEGIES

    kto = STRATEGIES["kto"]
    report = engine.validate_dataset(str(pairs["train_file"]), "text-generation", None, kto.fields("text-generation"))
    assert report.ok and report.fields == ("prompt", "chosen", "rejected")  # held-out pairs stay pairs
    tokenizer = AutoTokenizer.from_pretrained(demo_model_path)
    rows = kto.prepare_rows(report.records[:2], "text-generation", tokenizer)
    first = report.records[0]
    assert [(row["completion"][0]["content"], row["label"]) for row in rows[:2]] == [
        (first["chosen"], True), (first["rejected"], False)
    ]
    assert len(rows) == 4 and rows[0]["prompt"] == [{"role": "user", "content": first["prompt"]}]


def test_unsloth_refuses_the_objectives_it_does_not_run(engine, pairs):
    from modelforge.errors import ConfigError

    for strategy in OBJECTIVES:
        config = JobConfig(name="u", provider="unsloth", strategy=strategy, dataset=str(pairs["train_file"]))
        with pytest.raises(ConfigError, match=rf"unsloth cannot train this: Unsloth runs the strategies sft, qlora, "
                                              rf"dpo, not {strategy}; use provider huggingface"):
            engine.submit(config)
    assert not engine.list_jobs()


def test_held_out_labelled_answers_are_scored_as_the_pairs_they_form(demo_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelforge.training import evaluation

    config = JobConfig(name="kto", strategy="kto", dataset="labelled.jsonl", evaluation={"max_new_tokens": 2})
    model, tokenizer = AutoModelForCausalLM.from_pretrained(demo_model_path), AutoTokenizer.from_pretrained(demo_model_path)
    answers = [{"prompt": "cat", "completion": "meow", "label": True}, {"prompt": "dog", "completion": "woof", "label": True},
               {"prompt": "cat", "completion": "moo", "label": False}]
    assert evaluation.scored_rows(config, answers) == [{"prompt": "cat", "chosen": "meow", "rejected": "moo"}]
    table = evaluation.compare(config, answers, evaluation.predict(model, tokenizer, config, answers), None)
    assert set(table["metrics"]) == {"preference_accuracy", "reward_margin"} and table["examples"][0]["expected"] == "meow"

    unmatched = answers[:2]  # no prompt with both a good and a bad answer: no pair, so no accuracy, and no error
    assert evaluation.compare(config, unmatched, evaluation.predict(model, tokenizer, config, unmatched), None)["metrics"] == {}


def test_the_dataset_tab_validates_and_saves_preference_pairs_for_kto(engine, pairs, tmp_path):
    from modelforge.accounts import LOCAL
    from modelforge.ui import dataset_tab

    upload = tmp_path / "pairs.jsonl"
    upload.write_text(pairs["train_file"].read_text())
    report, *_, validated = dataset_tab.validate(engine, str(upload), None, "text-generation", "kto", None, 512)[:6]
    assert report.startswith("### ✅ Valid") and validated is not None, report
    message, *_ = dataset_tab.save(engine, LOCAL, "pairs-for-kto", str(upload), None, "text-generation", "kto",
                                   validated, column_1="prompt")
    assert message.startswith("✅ Saved **pairs-for-kto**: 120 rows"), message


@pytest.mark.parametrize("strategy", OBJECTIVES)
def test_each_objective_trains_a_finished_jobs_adapter_further(strategy, engine, finished_job, pairs):
    from safetensors.torch import load_file

    config = JobConfig(
        name=f"{strategy}-further",
        strategy=strategy,
        init_from=str(finished_job.id),
        dataset=str(pairs["train_file"]),
        training={"max_steps": 3, "batch_size": 8, "learning_rate": 3e-3, "eval_split": 0, "save_steps": 100},
    )
    job = train_in_process(engine, config)
    assert job.status == "completed", job.error
    before = load_file(f"{finished_job.output_dir}/adapter_model.safetensors")
    after = load_file(f"{job.output_dir}/adapter_model.safetensors")
    assert before.keys() == after.keys()  # the same adapter (r=4), trained further
    assert any(not before[name].equal(after[name]) for name in before)
