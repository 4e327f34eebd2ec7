//! Configuration: the `config.yaml` model, defaults, loading and validation; the `.runner` registration file; labels.
