"""The `covid_ct_synthetic` TFDS dataset: GAN-drawn slices exported by `covidct generate --tfds`."""
