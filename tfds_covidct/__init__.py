"""The `covid_ct` TFDS dataset: raw CT scans (manual_dir) or synthetic phantoms -> clean TFRecords.

Entry point for code: `tfds_covidct.build.build(...)`. Entry point for `tfds build`:
the module path `tfds_covidct/covid_ct`.
"""
