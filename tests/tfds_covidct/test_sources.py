"""sources: layouts found by shape; unsafe zip entries and odd rows recorded; nothing-to-build errors."""

import io
import zipfile

import pytest
from PIL import Image

from tfds_covidct.covid_ct import phantoms, sources
from tfds_covidct.errors import DatasetError


def _png(index=0, label="covid") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(phantoms.figure(index, label, "plain").rgb).save(buffer, "PNG")
    return buffer.getvalue()


def _files(found):
    return {f.display: f for src in found for f in src.files}


def test_missing_empty_and_unrecognisable_manual_dir_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no manual_dir"):
        sources.discover(None)
    with pytest.raises(DatasetError, match="does not exist"):
        sources.discover(str(tmp_path / "nope"))
    with pytest.raises(DatasetError, match="is empty"):
        sources.discover(str(tmp_path))
    (tmp_path / "holiday_photos").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no recognisable source.*holiday_photos"):
        sources.discover(str(tmp_path))


def test_kaggle_zip_is_read_in_place_and_a_dotdot_entry_is_a_recorded_skip(tmp_path):
    archive = tmp_path / "covidct.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("COVID-CT/CT_COVID/a.png", _png(0))
        z.writestr("COVID-CT/CT_NonCOVID/b.png", _png(1, "non_covid"))
        z.writestr("../evil.png", _png(2))
        z.writestr("COVID-CT/README.txt", "not ours")
    found = sources.discover(str(tmp_path))
    files = _files(found)
    assert files["covidct.zip/COVID-CT/CT_COVID/a.png"].label == "covid"
    assert files["covidct.zip/COVID-CT/CT_NonCOVID/b.png"].label == "non_covid"
    evil = files["covidct.zip/../evil.png"]
    assert evil.skip == "unsafe_zip_entry" and "escape" in evil.skip_detail
    assert not any("README" in name for name in files)
    assert files["covidct.zip/COVID-CT/CT_COVID/a.png"].read() == _png(0)
    assert not (tmp_path.parent / "evil.png").exists() and len(list(tmp_path.iterdir())) == 1


def test_unsafe_member_names():
    for name in ("../x.png", "a/../../x.png", "/etc/passwd", "C:/x.png", "a\\..\\x.png"):
        assert not sources.is_safe_member(name), name
    assert sources.is_safe_member("CT_COVID/x%1.png")


def test_extracted_folders_nested_one_level(tmp_path):
    for folder, label in (("CT_COVID", "covid"), ("CT_NonCOVID", "non_covid")):
        (tmp_path / "COVID-CT" / folder).mkdir(parents=True)
        (tmp_path / "COVID-CT" / folder / "x.png").write_bytes(_png(0, label))
    (tmp_path / "COVID-CT" / "CT_COVID" / ".DS_Store").write_bytes(b"\0")
    found = sources.discover(str(tmp_path))
    assert [f.kind for f in found] == ["covid-ct"]
    files = _files(found)
    assert set(files) == {"COVID-CT/CT_COVID/x.png", "COVID-CT/CT_NonCOVID/x.png"}
    assert files["COVID-CT/CT_NonCOVID/x.png"].label == "non_covid"


METADATA = """patientid,finding,view,modality,folder,filename
1,COVID-19,Axial,CT,images,a.jpg
2,No Finding,Axial,CT,images,b.jpg
3,COVID-19,Coronal,CT,images,c.jpg
4,COVID-19,PA,X-ray,images,d.jpg
5,Pneumonia/Viral/COVID-19,Axial,CT,images,gone.jpg
"""


@pytest.mark.parametrize("nested", [True, False])
def test_chestxray_checkout_ct_rows(tmp_path, nested):
    root = tmp_path / "covid-chestxray-dataset"
    images = root / "images" if nested else root  # upstream layout, or the sample's flat one
    images.mkdir(parents=True)
    (root / "metadata.csv").write_text(METADATA)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (images / name).write_bytes(_png())
    found = sources.discover(str(tmp_path))
    assert [f.kind for f in found] == ["covid-chestxray-dataset"]
    rows = {f.file_name: f for f in found[0].files}
    assert set(rows) == {"a.jpg", "b.jpg", "c.jpg", "gone.jpg"}  # the X-ray row is not an input
    assert rows["a.jpg"].label == "covid" and rows["a.jpg"].skip is None
    assert rows["b.jpg"].label == "non_covid"
    assert rows["c.jpg"].skip == "not_axial"
    assert rows["gone.jpg"].skip == "missing_file" and rows["gone.jpg"].label == "covid"


def test_labelled_folders_and_synthetic_phantoms_never_mix(tmp_path):
    (tmp_path / "covid").mkdir()
    (tmp_path / "covid" / "scan.png").write_bytes(_png())
    found = sources.discover(str(tmp_path))
    assert [(f.kind, f.files[0].label) for f in found] == [("folder", "covid")]
    phantoms.write_phantoms(tmp_path / "demo", per_class=1)
    with pytest.raises(DatasetError, match="mixes synthetic phantoms with real scans"):
        sources.discover(str(tmp_path))


def test_synthetic_folder_is_its_own_source(tmp_path):
    phantoms.write_phantoms(tmp_path, per_class=2)
    found = sources.discover(str(tmp_path))
    assert [f.kind for f in found] == ["synthetic_phantom"] and found[0].synthetic
    assert sorted(f.label for f in found[0].files) == ["covid", "covid", "non_covid", "non_covid"]


def test_dangling_links_are_counted_skips_with_their_reason(tmp_path):
    """A DataLad / git-annex checkout whose large files were never fetched: each is a symbolic link
    into .git/annex/objects that points at nothing. Each one (image, volume, or a link whose target
    moved) is an audit row, a `dangling_link` skip saying what to do, counted in "found"."""
    from tfds_covidct.covid_ct import audit, pipeline

    root = tmp_path / "manual"
    for folder, label in (("CT_COVID", "covid"), ("CT_NonCOVID", "non_covid")):
        (root / folder).mkdir(parents=True)
        for i in range(3):
            (root / folder / f"real_{i}.png").write_bytes(_png(i, label))
    annexed = "../../.git/annex/objects/Xq/3v/SHA256E-s1234--ab.png/SHA256E-s1234--ab.png"
    (root / "CT_COVID" / "unfetched.png").symlink_to(annexed)
    (root / "CT_NonCOVID" / "moved.png").symlink_to(tmp_path / "elsewhere" / "moved.png")
    (root / "mosmed" / "CT-1").mkdir(parents=True)
    (root / "mosmed" / "CT-1" / "study_0001.nii.gz").symlink_to(
        "../../../.git/annex/objects/aa/bb/SHA256E-s9--cd.nii.gz/SHA256E-s9--cd.nii.gz")
    files = _files(sources.discover(str(root)))
    dangling = {name: f for name, f in files.items() if f.skip == "dangling_link"}
    assert set(dangling) == {"CT_COVID/unfetched.png", "CT_NonCOVID/moved.png",
                             "mosmed/CT-1/study_0001.nii.gz"}, files
    assert "datalad get" in dangling["CT_COVID/unfetched.png"].skip_detail
    assert "does not exist" in dangling["CT_NonCOVID/moved.png"].skip_detail
    volume = dangling["mosmed/CT-1/study_0001.nii.gz"]
    assert (volume.volume, volume.label) == ("nifti", "covid")
    spool = tmp_path / "spool"
    spool.mkdir()
    summary = audit.summarise(pipeline.plan(str(root), (28, 28), str(spool), workers=1).records)
    assert summary["found"] == 9 and summary["rejected_by_reason"]["dangling_link"] == 3, summary
    assert summary["volumes"]["found"] == 1 and summary["volumes"]["rejected"] == 1
