"""MIMIC-II loading: the notebook's preprocessing, the downloader (against a local server) and every DataError."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import CONF, HANG_GUARD_S
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from sklearn.preprocessing import KBinsDiscretizer

from lenbench.data import DataError, download_mimic, load_mimic
from lenbench.data.base import ConceptDataset
from lenbench.data.mimic import MIMIC_SHA256, MIMIC_URL, RELATIVE_PATH, _bin_uniform

FIRST_12 = [
    "aline_flg",
    "gender_num",
    "sepsis_flg",
    "chf_flg",
    "afib_flg",
    "renal_flg",
    "liver_flg",
    "copd_flg",
    "cad_flg",
    "stroke_flg",
    "mal_flg",
    "resp_flg",
]
# The notebook's f2 (data.columns.difference(...)), written out so the test does not derive it like the code does.
BINNED = [
    "abg_count",
    "age",
    "bmi",
    "bun_first",
    "chloride_first",
    "creatinine_first",
    "day_icu_intime_num",
    "hgb_first",
    "hour_icu_intime",
    "hr_1st",
    "icu_los_day",
    "iv_day_1",
    "map_1st",
    "pco2_first",
    "platelet_first",
    "po2_first",
    "potassium_first",
    "sapsi_first",
    "service_num",
    "sodium_first",
    "sofa_first",
    "spo2_1st",
    "tco2_first",
    "temp_1st",
    "wbc_first",
    "weight_first",
]
# SHA-256 of x.tobytes() for the notebook's preprocessing; its decision-tree folds reproduce the notebook (below).
X_SHA256 = "f283546245f55dcec82d0ccc150de69c9e82febe1716116abd903ebecfe6067e"


# --- the notebook's preprocessing ------------------------------------------------------------------------------


def test_shape_dtypes_and_names(mimic: ConceptDataset) -> None:
    assert mimic.name == "mimic"
    assert mimic.label == "day_28_flg"
    assert mimic.x.shape == (1776, 90)
    assert mimic.x.dtype == np.float32
    assert mimic.y.dtype == np.int64
    assert sorted(BINNED) == BINNED
    assert mimic.concept_names[:12] == FIRST_12
    assert mimic.concept_names[12:] == [f"{c}_{s}" for c in BINNED for s in ("LOW", "NORMAL", "HIGH")]
    assert mimic.checksum == MIMIC_SHA256
    assert mimic.refit is None


def test_labels_and_values(mimic: ConceptDataset, mimic_csv: Path) -> None:
    assert int(mimic.y.sum()) == 283
    assert set(np.unique(mimic.y)) == {0, 1}
    assert not np.isnan(mimic.x).any()
    assert mimic.x.min() >= 0.0 and mimic.x.max() <= 1.0
    # Every binned column is one-hot over its three bins.
    np.testing.assert_array_equal(mimic.x[:, 12:].reshape(1776, 26, 3).sum(axis=2), 1.0)
    # gender_num has one missing value, imputed with the column mean; the other flags are exactly 0/1.
    gender = pd.read_csv(mimic_csv)["gender_num"]
    assert gender.isna().sum() == 1
    imputed = mimic.x[gender.isna().to_numpy(), 1]
    np.testing.assert_allclose(imputed, gender.mean(), rtol=1e-6)
    assert np.isin(np.delete(mimic.x[:, :12], np.flatnonzero(gender.isna()), axis=0), [0.0, 1.0]).all()


def test_reproduces_the_notebook(mimic: ConceptDataset) -> None:
    """The notebook's decision-tree row, exactly (model accuracy 0.795575, complexity 1342.6), from `method=tree`'s
    explainer on the protocol's 10 folds; it depends on the pre-1.1 binning tolerance."""
    assert hashlib.sha256(mimic.x.tobytes()).hexdigest() == X_SHA256
    import train  # noqa: F401  (registers the train_schema config that train.yaml starts from)
    from lenbench.fold_runner import iter_folds
    from lenbench.folds import CVConfig, FoldPlan

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["method=tree"])
    cv = CVConfig(n_splits=cfg.cv.n_splits, split_seed=cfg.cv.split_seed)
    results = list(iter_folds(mimic, FoldPlan.alone(partial(instantiate, cfg.method.explainer), cv)))
    assert [r.fold for r in results] == list(range(10))
    assert np.mean([r.metrics["model_accuracy"] for r in results]) == pytest.approx(0.795575, abs=1e-6)
    assert np.mean([r.metrics["explanation_complexity"] for r in results]) == pytest.approx(1342.6, abs=1e-9)
    assert all(r.metrics["explanation_fidelity"] == 1.0 for r in results)


def test_binning_keeps_the_old_edge_tolerance() -> None:
    values = np.array([[0.0], [1 / 3 - 1e-7], [0.5], [2 / 3 - 1e-7], [1.0]])
    codes = _bin_uniform(values, values, ["v"]).argmax(axis=1)
    np.testing.assert_array_equal(
        codes, [0, 1, 1, 2, 2]
    )  # a hair below an edge goes up, as in sklearn <= 1.0
    # Away from the edges it is scikit-learn's uniform KBinsDiscretizer.
    rng = np.random.default_rng(0)
    other = rng.random((200, 4))
    other = other[(np.abs(other[:, :, None] - np.array([1 / 3, 2 / 3])) > 1e-4).all(axis=(1, 2))]
    expected = KBinsDiscretizer(n_bins=3, encode="onehot-dense", strategy="uniform").fit_transform(other)
    np.testing.assert_array_equal(_bin_uniform(other, other, list("abcd")), expected)


def test_any_death_label(mimic_root: Path, mimic: ConceptDataset) -> None:
    wide = load_mimic(mimic_root, label="any_death", download=False)
    assert wide.label == "any_death"
    assert int(wide.y.sum()) > 283
    assert (wide.y[mimic.y == 1] == 1).all()
    np.testing.assert_array_equal(wide.x, mimic.x)


def test_fit_scope_train_refits_on_given_rows(mimic_root: Path, mimic: ConceptDataset) -> None:
    scoped = load_mimic(mimic_root, fit_scope="train", download=False)
    np.testing.assert_array_equal(scoped.x, mimic.x)
    assert scoped.refit is not None
    refitted = scoped.refit(np.arange(0, 1776, 2)).x
    assert refitted.shape == mimic.x.shape and refitted.dtype == np.float32
    assert not np.array_equal(refitted, mimic.x)
    np.testing.assert_array_equal(scoped.refit(np.arange(1776)).x, mimic.x)
    with pytest.raises(ValueError, match="train_index"):
        scoped.refit(np.array([0, 5000]))


@pytest.mark.parametrize(("key", "value"), [("label", "death"), ("fit_scope", "test")])
def test_unknown_option(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(DataError, match=f"{key} '{value}'") as info:
        load_mimic(tmp_path, download=False, **{key: value})
    assert ("day_28_flg, any_death" if key == "label" else "all, train") in str(info.value)


# --- missing and wrong local files -----------------------------------------------------------------------------


def test_missing_file_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_mimic(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / RELATIVE_PATH) in message
    assert MIMIC_URL in message and "LENBENCH_DATA_DIR" in message


def test_wrong_local_file_fails_checksum(tmp_path: Path, mimic_csv: Path) -> None:
    dest = tmp_path / RELATIVE_PATH
    dest.parent.mkdir(parents=True)
    dest.write_bytes(mimic_csv.read_bytes().replace(b",", b";", 1))
    with pytest.raises(DataError) as info:
        load_mimic(tmp_path, download=False)
    message = str(info.value)
    assert "SHA-256" in message and MIMIC_SHA256 in message and "delete it" in message
    assert hashlib.sha256(dest.read_bytes()).hexdigest() in message
    assert dest.exists()  # a user's file is reported, never deleted


def _write_variant(root: Path, text: str | bytes) -> Path:
    dest = root / RELATIVE_PATH
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.encode() if isinstance(text, str) else text)
    return root


def _frame_variant(root: Path, csv: Path, change) -> Path:
    frame = pd.read_csv(csv).astype(object)
    change(frame)
    return _write_variant(root, frame.to_csv(index=False, lineterminator="\r"))


def test_unchanged_rewrite_loads(tmp_path: Path, mimic_csv: Path) -> None:
    """The corrupt-file tests below rewrite the CSV with pandas; unmodified, such a rewrite loads fine."""
    data = load_mimic(_frame_variant(tmp_path, mimic_csv, lambda f: None), download=False, sha256=None)
    assert data.x.shape == (1776, 90)


def _drop_age(frame: pd.DataFrame) -> None:
    del frame["age"]


def _set(column: str, row: int, value: object):
    def change(frame: pd.DataFrame) -> None:
        frame.loc[row, column] = value

    return change


def _empty(column: str):
    def change(frame: pd.DataFrame) -> None:
        frame[column] = None

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_drop_age, ["lacks 1 required column(s): age", "aline_flg, icu_los_day"]),
        (_set("bun_first", 4, "abc"), ["'bun_first' must be numeric", "row 5 holds 'abc'"]),
        (_set("day_28_flg", 9, 2), ["'day_28_flg' must be 0 or 1", "row 10 holds 2"]),
        (_set("day_28_flg", 3, None), ["'day_28_flg' must be 0 or 1", "row 4 holds nan"]),
        (_set("stroke_flg", 0, 3), ["'stroke_flg' must be 0, 1 or empty", "row 1 holds 3"]),
        (_empty("sofa_first"), ["'sofa_first' has no values at all"]),
    ],
    ids=["missing-column", "non-numeric", "label-2", "label-missing", "flag-3", "all-nan"],
)
def test_corrupt_file(tmp_path: Path, mimic_csv: Path, change, expected: list[str]) -> None:
    root = _frame_variant(tmp_path, mimic_csv, change)
    with pytest.raises(DataError) as info:
        load_mimic(root, download=False, sha256=None)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message
    assert str(root / RELATIVE_PATH) in message and MIMIC_URL in message


def test_any_death_checks_its_sources(tmp_path: Path, mimic_csv: Path) -> None:
    root = _frame_variant(tmp_path, mimic_csv, _set("censor_flg", 7, 5))
    assert load_mimic(root, download=False, sha256=None).y.sum() == 283  # day_28_flg does not read censor_flg
    with pytest.raises(DataError, match="'censor_flg' must be 0 or 1"):
        load_mimic(root, label="any_death", download=False, sha256=None)


def test_empty_header_only_truncated_and_garbage_files(tmp_path: Path, mimic_csv: Path) -> None:
    raw = mimic_csv.read_bytes()
    header = raw.split(b"\r", 1)[0]
    cut = raw.index(b",", len(raw) // 2)  # mid-row: pandas would pad the row with NaN
    cases = {
        b"": "is empty",
        header + b"\r": "no data rows",
        raw[:cut]: "truncated: its last row has",
        b"\x00\xff\xfe garbage \x00\r1,2,3\r1,2,3,4,5\r": "not a readable CSV",
    }
    for i, (content, expected) in enumerate(cases.items()):
        root = _write_variant(tmp_path / str(i), content)
        with pytest.raises(DataError, match=expected):
            load_mimic(root, download=False, sha256=None)


# --- the downloader, against a local HTTP server ---------------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; ``/stall`` sends half a body and then hangs until the server stops, to exercise the read
    timeout: the client can only get out through its timeout, however slowly either side runs."""

    def do_GET(self) -> None:
        if self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"a" * 500)
            self.wfile.flush()
            self.server.stop.wait(HANG_GUARD_S)  # type: ignore[attr-defined]
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A local HTTP server on a free port and the folder it serves; the tests never touch the internet."""
    folder = tmp_path_factory.mktemp("served")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(folder)))
    httpd.stop = threading.Event()  # type: ignore[attr-defined]  # releases the stalled answers
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder
    finally:
        httpd.stop.set()  # type: ignore[attr-defined]
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def published(server: tuple[str, Path], mimic_csv: Path) -> str:
    """The server's URL, now serving good.csv (the real file) and bad.csv (its last byte changed)."""
    url, folder = server
    raw = mimic_csv.read_bytes()
    (folder / "good.csv").write_bytes(raw)
    (folder / "bad.csv").write_bytes(raw[:-1] + b"9")
    return url


def test_download_then_load(tmp_path: Path, published: str) -> None:
    data = load_mimic(tmp_path, url=f"{published}/good.csv", download=True, timeout=HANG_GUARD_S)
    assert data.x.shape == (1776, 90) and data.checksum == MIMIC_SHA256
    assert sorted(p.name for p in (tmp_path / RELATIVE_PATH).parent.iterdir()) == ["full_cohort_data.csv"]


def test_download_with_wrong_checksum_leaves_nothing(tmp_path: Path, published: str) -> None:
    dest = tmp_path / RELATIVE_PATH
    with pytest.raises(DataError, match="failed its checksum") as info:
        download_mimic(dest, url=f"{published}/bad.csv", timeout=HANG_GUARD_S)
    assert MIMIC_SHA256 in str(info.value)
    assert not dest.parent.exists() and tmp_path.exists()  # the folder made for it is gone too, not more


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_failures_leave_nothing(tmp_path: Path, server: tuple[str, Path]) -> None:
    base = server[0]
    # (expected message, read timeout). Only the stalled download is about the timeout: it gets a short one, which
    # it must reach however busy the machine is (the server never sends the rest; on a very slow machine the
    # timeout may strike before the headers, "timed out"). The others get a hang guard: a slow answer is no error.
    cases = {
        f"{base}/missing.csv": ("HTTP 404", HANG_GUARD_S),
        f"http://127.0.0.1:{_free_port()}/full_cohort_data.csv": ("refused", HANG_GUARD_S),
        f"{base}/stall": ("timeout|timed out", 0.3),
    }
    for i, (url, (expected, timeout)) in enumerate(cases.items()):
        root = tmp_path / str(i)
        with pytest.raises(DataError, match=expected) as info:
            load_mimic(root, url=url, download=True, timeout=timeout)
        message = str(info.value)
        assert url in message and "LENBENCH_DATA_DIR" in message and "Nothing was saved" in message
        assert str(root / RELATIVE_PATH) in message
        assert not root.exists()  # no file, no empty folder left behind


def test_download_replaces_an_existing_file(tmp_path: Path, published: str, mimic_csv: Path) -> None:
    dest = tmp_path / "x" / "file.csv"
    dest.parent.mkdir()
    dest.write_bytes(b"an old, wrong file")
    assert download_mimic(dest, url=f"{published}/good.csv", timeout=HANG_GUARD_S) == dest
    assert dest.read_bytes() == mimic_csv.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["file.csv"]


def test_the_data_root_is_the_environment_else_the_shared_copy_else_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import lenbench.config as config

    monkeypatch.setenv("LENBENCH_DATA_DIR", str(tmp_path / "mine"))
    assert config.default_data_root() == str(tmp_path / "mine")
    monkeypatch.delenv("LENBENCH_DATA_DIR")
    shared = tmp_path / "shared" / "data"
    monkeypatch.setattr(config, "_SHARED_DATA", shared)
    assert config.default_data_root() == "data"  # no shared copy: downloads go to ./data
    (shared / RELATIVE_PATH).parent.mkdir(parents=True)
    (shared / RELATIVE_PATH).write_text("x")
    assert config.default_data_root() == str(shared)
