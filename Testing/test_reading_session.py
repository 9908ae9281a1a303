"""Blinded reading sessions: reproducible sampling, blinding down to file headers, answers that survive a
kill, scoring, the command line, and every kind of bad input.

Two real studies (an LPS and a RAS one) cut to 8 axial slices; imputations come from the tiny untrained
model, once through the batch imputation (files) and once on the fly. Blinding does not depend on how
good the synthetic images are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.inference.batch import impute_folder
from CollaGANImputeLib.io.geometry import to_canonical_array
from CollaGANImputeLib.preparation.study import normalise_in_brain
from CollaGANImputeLib.reading.build import SessionSettings, create_session, display_window, find_studies
from CollaGANImputeLib.reading.report import POOLED, score_session, write_csv, write_report
from CollaGANImputeLib.reading.session import Session
from conftest import REPO, subject_files

SUBJECTS = ("BraTS-GLI-00001-000", "AURORA-MET-example")
SETTINGS = SessionSettings(("t1gd",), per_class=3, seed=7, min_gap=2)


@pytest.fixture(scope="module")
def studies(manifest, tmp_path_factory) -> Path:
    """A folder of two study folders, each contrast cut to 8 axial slices through the middle of the brain."""
    root = tmp_path_factory.mktemp("studies")
    for subject in SUBJECTS:
        (root / subject).mkdir()
        for key, path in subject_files(manifest, subject).items():
            sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 70:78], str(root / subject / f"{subject}_{key}.nii.gz"))
    return root


@pytest.fixture(scope="module")
def synthetic(studies, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    report = impute_folder(tiny_model, studies, out, "t1gd")
    assert all(isinstance(v, Path) for v in report.values()), report
    return out


@pytest.fixture(scope="module")
def session_dir(studies, synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sessions") / "s"
    create_session(find_studies(studies, synthetic), SETTINGS, out)
    return out


@pytest.fixture(scope="module")
def live_session_dir(studies, tiny_model, tmp_path_factory) -> Path:
    """Imputed on the fly by the engine's impute."""
    out = tmp_path_factory.mktemp("sessions") / "live"
    create_session(find_studies(studies), SessionSettings(("t1gd",), per_class=2, seed=3, min_gap=3), out, tiny_model)
    return out


@pytest.fixture
def fresh(session_dir, tmp_path) -> Path:
    """A copy of the session for tests that write answers or damage files."""
    return Path(shutil.copytree(session_dir, tmp_path / "copy"))


def key_of(folder: Path) -> dict:
    return json.loads((folder / "key.json").read_text())["items"]


# ----- sampling ------------------------------------------------------------------------------------
def test_same_seed_same_session_and_each_rater_has_an_order(session_dir, studies, synthetic, tmp_path):
    again = create_session(find_studies(studies, synthetic), SETTINGS, tmp_path / "again")
    for name in ("session.json", "key.json"):
        assert (tmp_path / "again" / name).read_bytes() == (session_dir / name).read_bytes()
    for item in again.items:
        assert again.item_path(item).read_bytes() == (session_dir / item.file).read_bytes()
    other = create_session(find_studies(studies, synthetic), SessionSettings(("t1gd",), 3, seed=8, min_gap=2), tmp_path / "other")
    assert other.session_id != again.session_id
    # No seed given: a secret one, so the ids cannot be matched to classes by replaying a known seed; key.json keeps it.
    secret = create_session(find_studies(studies, synthetic), SessionSettings(("t1gd",), 3, min_gap=2), tmp_path / "secret")
    seed = json.loads((tmp_path / "secret" / "key.json").read_text())["settings"]["seed"]
    assert isinstance(seed, int) and secret.session_id not in (again.session_id, other.session_id)
    rebuilt = create_session(find_studies(studies, synthetic), SessionSettings(("t1gd",), 3, seed=seed, min_gap=2), tmp_path / "rebuilt")
    assert rebuilt.session_id == secret.session_id
    assert (tmp_path / "rebuilt" / "key.json").read_bytes() == (tmp_path / "secret" / "key.json").read_bytes()

    session = Session(session_dir)
    first, second = session.reader("Dr A"), session.reader("Dr B")
    assert first.order != second.order and sorted(first.order) == sorted(second.order) == sorted(session.by_id)
    assert Session(session_dir).reader("Dr A").order == first.order


def test_sampling_balances_classes_and_keeps_slices_apart(session_dir, live_session_dir):
    for folder, per_class, gap in ((session_dir, 3, 2), (live_session_dir, 2, 3)):
        key = key_of(folder)
        assert sorted(t["class"] for t in key.values()) == ["real"] * per_class + ["synthetic"] * per_class
        for study in SUBJECTS:
            slices = sorted(t["slice"] for t in key.values() if t["study"] == study)
            assert all(b - a >= gap for a, b in zip(slices, slices[1:])), slices


def test_whole_volumes_one_per_study(studies, synthetic, tmp_path):
    session = create_session(find_studies(studies, synthetic), SessionSettings(("t1gd",), 1, volumes=True), tmp_path / "v")
    key = key_of(tmp_path / "v")
    assert sorted(t["study"] for t in key.values()) == sorted(SUBJECTS) and {t["slice"] for t in key.values()} == {None}
    assert sitk.ReadImage(str(session.item_path(session.items[0]))).GetSize()[2] == 8


# ----- blinding ------------------------------------------------------------------------------------
def header_fields(path: Path) -> dict:
    """Every NIfTI header field (NaN made comparable) and the raw header bytes."""
    header = nibabel.load(str(path)).header
    fields = {k: repr(np.asarray(header[k]).tolist()) for k in header.keys()}
    return {**fields, "binary": header.binaryblock}


def image_facts(path: Path) -> dict:
    image = sitk.ReadImage(str(path))
    return {"keys": {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}, "spacing": image.GetSpacing(),
            "origin": image.GetOrigin(), "direction": image.GetDirection(), "size": image.GetSize(),
            "pixel": image.GetPixelIDTypeAsString(), "bytes": path.stat().st_size, "mtime": path.stat().st_mtime}


@pytest.mark.parametrize("which", ["files", "on the fly"])
def test_nothing_the_rater_sees_tells_the_class(session_dir, live_session_dir, which):
    folder = session_dir if which == "files" else live_session_dir
    session, key = Session(folder), key_of(folder)
    shown = json.loads((folder / "session.json").read_text())
    assert "seed" not in shown and not any(s in json.dumps(shown) for s in SUBJECTS)
    assert all(set(entry) == {"id", "file", "contrast", "window"} for entry in shown["items"])
    assert sorted(p.name for p in (folder / "items").iterdir()) == sorted(f"{i}.nii" for i in key)
    assert all(re.fullmatch(r"item_\d{4}", i) for i in key)
    assert {t["class"] for t in key.values()} == {"real", "synthetic"}
    first = folder / "items" / f"{next(iter(key))}.nii"
    reference_header, reference_facts = header_fields(first), image_facts(first)
    for i in key:  # both studies are 240 x 240 at 1 mm, so every item must match in every field
        path = folder / "items" / f"{i}.nii"
        assert header_fields(path) == reference_header, i
        assert image_facts(path) == reference_facts, i
    assert reference_header["descrip"] == repr(b"") and reference_facts["pixel"] == "32-bit float"
    assert reference_facts["origin"] == (0.0, 0.0, 0.0) and reference_facts["direction"] == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    for item in session.items:  # one window rule, applied to the pixels alone
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(session.item_path(item))))
        assert item.window == pytest.approx(display_window(array))


def test_items_imputed_while_building_share_the_real_scans_lattice(live_session_dir, studies, tiny_model):
    """The default path (no --synthetic, and the Slicer panel's): the imputation is made while building, and
    both classes must still take the real scan's steps, or counting distinct values would tell them apart."""
    from CollaGANImputeLib.analysis.evaluation import real_on_grid
    from CollaGANImputeLib.inference.imputation import impute

    session, key = Session(live_session_dir), key_of(live_session_dir)
    classes = set()
    for study in find_studies(studies):
        imputation = impute({k: p for k, p in study.files.items() if k != "t1gd"}, "t1gd", tiny_model)
        real_sd = normalise_in_brain(real_on_grid(imputation, study.files["t1gd"]), imputation.study.mask)
        for item_id, truth in key.items():
            if truth["study"] == study.name:
                shown = sitk.GetArrayFromImage(sitk.ReadImage(str(session.item_path(session.by_id[item_id]))))
                assert np.allclose(shown * real_sd, np.round(shown * real_sd), rtol=0, atol=1e-2), (item_id, truth["class"])
                classes.add(truth["class"])
    assert classes == {"real", "synthetic"}


def test_items_are_the_real_and_synthetic_slices_masked_and_scaled_alike(session_dir, studies, synthetic):
    """Real and synthetic are cut from one canonical grid, zero outside the same mask, each divided by
    its standard deviation over that mask (the engine's brain-std units)."""
    session, key = Session(session_dir), key_of(session_dir)
    for study in SUBJECTS:
        real = np.clip(to_canonical_array(sitk.ReadImage(str(studies / study / f"{study}_t1gd.nii.gz"))), 0, None)
        fake = np.clip(to_canonical_array(sitk.ReadImage(str(synthetic / f"{study}_t1gd_collagan.nii.gz"))), 0, None)
        mask = (real > 0) | (fake > 0)
        real_sd = normalise_in_brain(real, mask)  # the scan stores integers: multiples of 1 / real_sd once scaled
        normalise_in_brain(fake, mask)
        for item_id, truth in key.items():
            if truth["study"] == study:
                shown = sitk.GetArrayFromImage(sitk.ReadImage(str(session.item_path(session.by_id[item_id]))))[0]
                expected = (real if truth["class"] == "real" else fake)[truth["slice"]]
                # Both classes on the real scan's lattice: continuous synthetic values would give themselves away.
                assert np.allclose(shown * real_sd, np.round(shown * real_sd), rtol=0, atol=1e-2), item_id
                assert np.allclose(shown, expected, atol=0.5 / real_sd + 1e-6)
                if truth["class"] == "real":
                    assert np.allclose(shown, expected, rtol=1e-6, atol=1e-6)  # the real image keeps its values
                assert not shown[~mask[truth["slice"]]].any()


def test_slicer_shows_every_item_alike(reading_module, session_dir):
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    logic = reading_module.ReadingSessionLogic(scene)
    session, key = Session(session_dir), key_of(session_dir)
    seen = {}
    for item in session.items:
        node = logic.showItem(session, item)
        display = node.GetDisplayNode()
        attributes = {name: node.GetAttribute(name) for name in node.GetAttributeNames()}
        seen.setdefault(key[item.id]["class"], set()).add((node.GetName(), json.dumps(attributes, sort_keys=True)))
        assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(item.window)
        assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 1
        assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeDisplayNode") == 1  # the last item's went with it
    assert seen["real"] == seen["synthetic"] and len(seen["real"]) == 1
    logic.clearItem()
    assert scene.GetNumberOfNodes() == 0


# ----- answers: resume, undo, kill -------------------------------------------------------------------
def test_reopening_continues_at_the_next_item_with_every_answer(fresh):
    reader = Session(fresh).reader("Dr A")
    calls = ["real", "synthetic", "real"]
    for number, call in enumerate(calls, 1):
        item = reader.current()
        reader.answer(call, confidence=number, item_id=item.id, seconds=1.5)
    given = list(reader.answers)
    del reader
    again = Session(fresh).reader("Dr A")
    assert again.answers == given and [a["call"] for a in given] == calls
    assert again.current().id == again.order[3] and again.progress_text() == f"4 / {again.total}"


def test_undo_removes_only_this_raters_last_answer(fresh):
    session = Session(fresh)
    a, b = session.reader("Dr A"), session.reader("Dr B")
    b.answer("real")
    for call in ("real", "synthetic", "real"):
        a.answer(call)
    before_b = b.path.read_bytes()
    removed = a.undo()
    assert removed["item"] == a.order[2] and a.current().id == a.order[2]
    assert [x["call"] for x in Session(fresh).reader("Dr A").answers] == ["real", "synthetic"]
    assert b.path.read_bytes() == before_b
    assert session.reader("Nobody yet").undo() is None
    assert not session.answers_path("Nobody yet").exists()


def test_a_killed_reader_keeps_every_answer_it_gave(fresh):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO / "CollaGANImpute")!r})
        from CollaGANImputeLib.reading.session import Session
        reader = Session({str(fresh)!r}).reader("Dr K")
        for number in range(reader.total):
            reader.answer("real" if number % 2 else "synthetic")
            print("answered", number + 1, flush=True)
            time.sleep(0.02 if number < 2 else 60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, encoding="utf-8")
    try:
        for line in process.stdout:
            if line.strip() == "answered 3":
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    reader = Session(fresh).reader("Dr K")
    assert [a["call"] for a in reader.answers] == ["synthetic", "real", "synthetic"]
    assert [a["item"] for a in reader.answers] == reader.order[:3]
    assert not [p for p in (fresh / "answers").iterdir() if p.name.startswith(".")], "no temporary file left"


# ----- scoring and command line ----------------------------------------------------------------------
def test_scores_of_two_raters_with_agreement_and_exports(fresh, tmp_path):
    key = key_of(fresh)
    session = Session(fresh)
    perfect, fooled = session.reader("Perfect"), session.reader("Fooled")
    while not perfect.finished:
        perfect.answer(key[perfect.current().id]["class"])
    while not fooled.finished:
        fooled.answer("real")
    results = score_session(Session(fresh))
    rows = {(s.rater, s.contrast): s for s in results.scores}
    assert rows[("Perfect", "all")].accuracy == 1.0 and rows[("Perfect", "t1gd")].synthetic_called_real == 0.0
    assert rows[("Fooled", "all")].accuracy == 0.5 and rows[("Fooled", "all")].synthetic_called_real == 1.0
    assert rows[("Fooled", "all")].real_called_real == 1.0 and rows[(POOLED, "all")].items == 12
    assert rows[("Perfect", "all")].p_value == pytest.approx(2 / 2**6)
    assert results.agreements[0][1] == "Cohen's kappa" and results.agreements[0][2] == pytest.approx(0.0)
    csv_path, report = write_csv(results, tmp_path / "r.csv"), write_report(results, tmp_path / "r.md")
    assert csv_path.read_text().count("\n") == 1 + len(results.scores)
    assert "Clopper-Pearson" in report.read_text() and (tmp_path / "r.png").stat().st_size > 1000


def test_command_line_create_and_report(studies, synthetic, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["reading-session", "create", "--studies", str(studies), "--synthetic", str(synthetic), "--contrast", "t1ce",
                 "--contrast", "T1Gd", "--per-class", "2", "--min-gap", "2", "--out", str(out), "--seed", "5"]) == 0
    assert "4 items (T1Gd)" in capsys.readouterr().out  # both spellings name one contrast, as in file names
    assert main(["reading-session", "create", "--studies", str(studies), "--contrast", "t3", "--per-class", "2",
                 "--out", str(tmp_path / "none")]) == 2
    assert "--contrast 't3' names no known contrast" in capsys.readouterr().err and not (tmp_path / "none").exists()
    reader = Session(out).reader("Dr C")
    while not reader.finished:
        reader.answer("synthetic", 3)
    assert main(["reading-session", "report", str(out), "--csv", str(tmp_path / "t.csv"), "--report", str(tmp_path / "t.md")]) == 0
    printed = capsys.readouterr().out
    assert "Dr C" in printed and "50.0 %" in printed
    assert (tmp_path / "t.csv").is_file() and (tmp_path / "t.png").is_file()
    assert main(["reading-session", "report", str(out), "--rater", "Dr X"]) == 2
    assert "'Dr X' has no answers file" in capsys.readouterr().err


# ----- bad input -------------------------------------------------------------------------------------
def test_damaged_or_foreign_session_folders_are_named(fresh, tmp_path):
    with pytest.raises(InputError, match="no session.json"):
        Session(tmp_path)
    (fresh / "session.json").write_text("{ not json")
    with pytest.raises(InputError, match=r"session\.json' cannot be read as JSON"):
        Session(fresh)
    (fresh / "session.json").write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(InputError, match="not a CollaGAN reading session"):
        Session(fresh)


def test_missing_item_or_key_is_named(session_dir, tmp_path):
    copy = Path(shutil.copytree(session_dir, tmp_path / "c"))
    (copy / "key.json").unlink()
    with pytest.raises(InputError, match="answer key .*key.json' is missing"):
        score_session(Session(copy))
    next((copy / "items").iterdir()).unlink()
    with pytest.raises(InputError, match="lacks 1 item file"):
        Session(copy)


def test_answers_of_another_session_are_refused_and_left_alone(fresh, live_session_dir, tmp_path):
    other = Path(shutil.copytree(live_session_dir, tmp_path / "other"))
    Session(other).reader("Dr A").answer("real")
    foreign = other / "answers" / "Dr_A.json"
    assert foreign.is_file() and not (fresh / "answers").exists()
    shutil.copytree(other / "answers", fresh / "answers")
    before = (fresh / "answers" / "Dr_A.json").read_bytes()
    with pytest.raises(InputError, match=r"Dr_A\.json' belongs to another reading session"):
        Session(fresh).reader("Dr A")
    with pytest.raises(InputError, match="belongs to another reading session"):
        score_session(Session(fresh))
    assert (fresh / "answers" / "Dr_A.json").read_bytes() == before


def test_damaged_answers_are_refused_and_never_overwritten(fresh):
    reader = Session(fresh).reader("Dr A")
    reader.answer("real")
    data = json.loads(reader.path.read_text())
    data["answers"][0]["item"] = "item_9999"
    reader.path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="names item.* not in this session: item_9999"):
        Session(fresh).reader("Dr A")
    reader.path.write_text('{"format": "collagan-reading-answers/1", "ans')
    before = reader.path.read_bytes()
    with pytest.raises(InputError, match="cannot be read as JSON"):
        Session(fresh).reader("Dr A")
    with pytest.raises(InputError, match="cannot be read as JSON"):
        reader.answer("synthetic")  # a reader opened before the damage does not write over it either
    assert reader.path.read_bytes() == before


def test_a_session_open_twice_for_one_rater_loses_no_answer(fresh):
    first, second = Session(fresh).reader("Dr A"), Session(fresh).reader("Dr A")
    first.answer("real")
    with pytest.raises(InputError, match="changed since it was opened"):
        second.answer("synthetic")
    assert [a["call"] for a in Session(fresh).reader("Dr A").answers] == ["real"]


def test_wrong_answers_change_nothing(fresh):
    reader = Session(fresh).reader("Dr A")
    with pytest.raises(InputError, match="not the one to answer now"):
        reader.answer("real", item_id=reader.order[1])
    with pytest.raises(InputError, match="expected one of real, synthetic"):
        reader.answer("fake")
    with pytest.raises(InputError, match="confidence 9"):
        reader.answer("real", 9)
    assert not reader.path.exists()
    reader.answer("real")
    with pytest.raises(InputError, match="holds rater 'Dr A', not 'Dr. A'"):
        Session(fresh).reader("Dr. A")
    with pytest.raises(InputError, match="rater name"):
        Session(fresh).reader("  ")


def test_studies_without_the_real_contrast_are_named(studies, tmp_path, tiny_model):
    partial = Path(shutil.copytree(studies, tmp_path / "studies"))
    (partial / SUBJECTS[1] / f"{SUBJECTS[1]}_t1gd.nii.gz").unlink()
    with pytest.raises(InputError, match=f"study '{SUBJECTS[1]}' has no real T1Gd"):
        create_session(find_studies(partial), SETTINGS, tmp_path / "out", tiny_model)
    assert not (tmp_path / "out").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(InputError, match="not an empty folder"):
        create_session(find_studies(studies), SETTINGS, tmp_path / "busy", tiny_model)
    with pytest.raises(InputError, match="only .* slices .* but 40 are needed"):
        create_session(find_studies(studies), SessionSettings(("t1gd",), 20, min_gap=2), tmp_path / "many", tiny_model)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no partial session folder left"


def test_command_line_bad_input_exits_2(tmp_path, capsys):
    assert main(["reading-session", "report", str(tmp_path)]) == 2
    assert f"'{tmp_path}' is not a reading session folder" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


# ----- issue 21: a report never lands on the session's own files ----------------------------------------------
def test_a_report_never_overwrites_the_key_or_answers(fresh, tmp_path, capsys):
    reader = Session(fresh).reader("Dr A")
    reader.answer("real")
    protected = [fresh / "key.json", fresh / "session.json", reader.path]
    before = {path: path.read_bytes() for path in protected}
    for option, target, words in (("--report", fresh / "key.json", "is the answer key"),
                                  ("--csv", reader.path, "lies inside the answers folder"),
                                  ("--csv", fresh / "answers" / "new.json", "lies inside the answers folder"),
                                  ("--report", fresh / "session.json", "is the session file")):
        code = main(["reading-session", "report", str(fresh), option, str(target), "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1, err
    assert {path: path.read_bytes() for path in protected} == before
    (tmp_path / "r.csv").write_text("an earlier report")
    assert main(["reading-session", "report", str(fresh), "--csv", str(tmp_path / "r.csv")]) == 2
    assert "r.csv' already exists; give --overwrite" in capsys.readouterr().err
    assert main(["reading-session", "report", str(fresh), "--csv", str(tmp_path / "r.csv"), "--overwrite"]) == 0
    assert (tmp_path / "r.csv").read_text().startswith("session_id,")


def test_two_answers_files_of_one_rater_or_answers_that_are_not_records_are_named(fresh):
    reader = Session(fresh).reader("Dr A")
    reader.answer("real")
    copy = reader.path.with_name("copy.json")
    copy.write_bytes(reader.path.read_bytes())
    with pytest.raises(InputError, match=r"answers files '.*Dr_A.json' and '.*copy.json' both hold rater 'Dr A'; keep one"):
        score_session(Session(fresh))
    copy.unlink()
    damaged = json.loads(reader.path.read_text())
    damaged["answers"] = ["real", "synthetic"]
    reader.path.write_text(json.dumps(damaged))
    with pytest.raises(InputError, match=r"Dr_A.json' is damaged: answer 1 is \"real\", not a record with an item and a call"):
        score_session(Session(fresh))
