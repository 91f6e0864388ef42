"""Layout: `covid/` and `non_covid/` folders of any scans (source "folder"): the folder name is the
label; a sub-folder (covid/<patient or series>/...) is the group of what is in it.
"""

from __future__ import annotations

import dataclasses
import pathlib

from tfds_covidct.covid_ct.sources.inputs import Found, folder_files
from tfds_covidct.covid_ct.sources.labels import LABELS


def detect(folder: pathlib.Path, root: pathlib.Path) -> list[Found]:
    labelled = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name in LABELS]
    if not labelled:
        return []
    files = []
    for sub in labelled:
        for f in folder_files(sub, "folder", sub.name, root):
            inner = pathlib.Path(f.path).relative_to(sub).parts
            if f.volume == "dicom":  # the folder of a series: covid/<patient>/ is its group
                inner += ("",)
            # covid/<patient or series>/<slice>.png: the sub-folder is the group.
            group = (f"series:{sub.name}/{inner[0]}" if len(inner) > 1
                     else f.group if f.volume else f"file:{f.file_name}")
            files.append(dataclasses.replace(f, group=group))
    return [Found("folder", str(folder), tuple(files))]
