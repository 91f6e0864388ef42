"""The scan sources of a manual_dir: layouts found by shape, and every input file they list.

    discovery.py        discover(): the layouts in order (LAYOUTS), then loose CT volumes
    inputs.py           InputFile, Found, the folder walk every layout shares (dangling links too)
    labels.py           LABELS (the project's classes), folder names, label words, the labels CSV
    synthetic.py        SYNTHETIC_PHANTOMS.json + covid/ non_covid/: the demo phantoms
    covidct.py          CT_COVID/ CT_NonCOVID/ folders or zips (COVID-CT, Kaggle covidct)
    chestxray.py        metadata.csv + images/ (covid-chestxray-dataset)
    labelled_folders.py covid/ non_covid/ folders of any scans
    loose_volumes.py    CT volumes outside those, labelled by folder or CSV

Adding a layout: a module with `detect(folder, root) -> list[Found]` and one entry in
`discovery.LAYOUTS`.
"""

from tfds_covidct.covid_ct.sources.discovery import LAYOUTS, discover
from tfds_covidct.covid_ct.sources.inputs import (
    SYNTHETIC_MARKER, SYNTHETIC_SOURCE, Found, InputFile, is_safe_member)
from tfds_covidct.covid_ct.sources.labels import LABELS

__all__ = ["LABELS", "LAYOUTS", "SYNTHETIC_MARKER", "SYNTHETIC_SOURCE", "Found", "InputFile",
           "discover", "is_safe_member"]
