import pandas as pd
import pytest

from amixup.tables import compare_with_paper, data_note, load_paper_results, side_by_side, summarize


def test_data_note_names_the_origin_and_the_jpeg_caveat_whether_cached_or_not():
    cached = {"data": {"source": "cache cifar10.pt of imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"}}
    fresh = {"data": {"source": "imagefolder archive cifar10-jpeg.tar.gz (lossy JPEG re-encoding)"}}
    assert data_note([cached]) == data_note([fresh])
    assert "lossy JPEG re-encoding of CIFAR-10" in data_note([fresh])
    assert "lossy" not in data_note([{"data": {"source": "torchvision files cifar-10-batches-py"}}])


def test_summary_and_comparison_with_the_paper():
    frame = pd.DataFrame({"method": ["ce", "ce", "am_mixup"], "acc_all": [40.0, 44.0, 70.0]})
    summary = summarize(frame, ["acc_all"])
    assert summary.loc["ce", "acc_all_mean"] == 42.0 and summary.loc["ce", "seeds"] == 2
    assert summary.loc["ce", "acc_all_std"] == pytest.approx(2 ** 0.5 * 2)
    table = compare_with_paper(summary, load_paper_results(), table=2, metrics=["acc_all"])
    row = table.set_index("method").loc["am_mixup"]
    assert row["paper"] == 66.9 and row["diff"] == pytest.approx(70.0 - 66.9)
    wide = side_by_side(table)
    assert list(wide.index) == ["ce", "am_mixup"] and wide.loc["ce", ("acc_all", "paper")] == 42.52
    # with a seed column, "seeds" counts distinct seeds (a seed trained twice, e.g. in fp32 and bf16, is one)
    seeded = frame.assign(seed=[0, 0, 0])
    assert summarize(seeded, ["acc_all"]).loc["ce", "seeds"] == 1
    # Table 4 has a row per network: by method alone the paper's number is ambiguous (the first one was taken)
    large = pd.DataFrame({"dataset": ["imagenet_lt"], "method": ["ce"], "acc_all": [40.0]})
    with pytest.raises(ValueError, match=r"Table 4, .*acc_all: 3 rows of the paper match, differing in \['network'\]"):
        compare_with_paper(summarize(large, ["acc_all"], by=("dataset", "method")), load_paper_results(), table=4,
                           metrics=["acc_all"], source=("paper", "paper_reproduced"))
    by_network = summarize(large.assign(network="resnet50"), ["acc_all"], by=("dataset", "network", "method"))
    assert compare_with_paper(by_network, load_paper_results(), table=4, metrics=["acc_all"],
                              source=("paper", "paper_reproduced"))["paper"].tolist() == [45.88]


def test_comparison_by_dataset_imbalance_and_method_takes_the_first_reporting_source():
    frame = pd.DataFrame({"dataset": ["cifar10_lt", "cifar10_lt"], "imb_factor": [100.0, 100.0],
                          "method": ["ce", "am_mixup"], "acc_all": [70.0, 75.0]})
    summary = summarize(frame, ["acc_all"], by=("dataset", "imb_factor", "method"))
    table = compare_with_paper(summary, load_paper_results(), table=3, metrics=["acc_all"],
                               source=("paper", "paper_reproduced"))
    paper = table.set_index("method")["paper"]
    assert paper["am_mixup"] == 75.38 and paper["ce"] == 71.86  # AM-mixup: paper; CE: the authors' reproduction
    wide = side_by_side(table)
    assert list(wide.index) == [("cifar10_lt", 100.0, "ce"), ("cifar10_lt", 100.0, "am_mixup")]
