import pytest

from conftest import prepared_sample
from svwhisper.data import FeatureSplit
from svwhisper.featurize import featurize_split
from svwhisper.params import FeaturizeParams
from svwhisper.text import TextParams, normalize


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """20 prepared clips of the shipped corpus, and a local processor for them."""
    return prepared_sample(tmp_path_factory.mktemp("prepared"), 20)


def test_shards_are_bounded_and_identical_with_one_or_two_workers(prepared, tmp_path):
    path, table, processor = prepared
    outputs = {}
    for workers in (2, 1):
        params = FeaturizeParams(shard_size=8, num_proc=workers)
        out = tmp_path / f"workers{workers}"
        assert featurize_split(path, out, processor, params, TextParams(normalize_labels=True), max_label_len=64) == (
            20,
            3,
        )
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert list(outputs[1]) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert outputs[1] == outputs[2]  # deterministic, and the pool puts every clip back in its place

    split = FeatureSplit(tmp_path / "workers2")
    assert split.table["id"].tolist() == table["id"].tolist()
    item = split[5]
    assert item["input_features"].shape[1] == 80 and 50 < item["input_features"].shape[0] <= 400
    assert processor.tokenizer.decode(item["labels"], skip_special_tokens=True) == normalize(table["sentence"][5])


def test_clip_longer_than_the_window_and_too_long_labels_stop_with_the_knob_to_turn(prepared, tmp_path):
    path, table, processor = prepared
    long = table.assign(duration_s=table["duration_s"].where(table.index != 3, 5.0))
    long.to_parquet(tmp_path / "long.parquet", index=False)
    with pytest.raises(SystemExit, match="prepare.max_duration_s"):
        featurize_split(tmp_path / "long.parquet", tmp_path / "a", processor, FeaturizeParams(), TextParams(), 64)
    with pytest.raises(SystemExit, match="model.max_target_positions"):
        featurize_split(path, tmp_path / "b", processor, FeaturizeParams(num_proc=1), TextParams(), 5)


def test_feature_split_without_shards_says_to_run_featurize(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the featurize stage"):
        FeatureSplit(tmp_path)
