//! Configuration: the `config.yaml` model, defaults, loading and validation; the `.runner`
//! registration file; labels.
//!
//! Two layers, as ripgrep splits its arguments: `yaml` parses text into a tree where every key
//! and value keeps its line and column (serde-saphyr, strict booleans), and `load` reads that
//! tree key by key into the validated [`Config`], applying upstream's defaults, warning about
//! unknown keys and collecting every invalid value before failing.
//!
//! May use: `std`, serde, serde-saphyr, `nix` (the registration lock). Never: `client`,
//! `daemon`, `executor`, `systemd`, `metrics`, `cli`. Others read [`Config`]; none of them sees YAML.
//!
//! ```
//! use act_runner::config::{Config, LoadEnv};
//! use std::path::Path;
//! let env = LoadEnv::with_home("/home/runner");
//! let loaded = Config::from_yaml("runner:\n  capacity: 4\n", Path::new("config.yaml"), &env).unwrap();
//! assert_eq!(loaded.config.runner.capacity, 4);
//! ```

mod dotenv;
mod duration;
mod edit;
mod error;
mod keys;
mod labels;
mod load;
mod model;
mod not_acted_on;
mod reader;
mod registration;
mod secret;
mod size;
pub mod small_file;
mod yaml;

pub use dotenv::{DotenvError, parse_dotenv};
pub use duration::{DurationError, GoDuration};
pub use edit::{EditError, EditKind, edit_value, get_value};
pub use error::{ConfigError, KeyMessage};
pub use keys::{KEYS, KeyKind, KeyPathError, KeyTarget, resolve_key};
pub use labels::{
    DEFAULT_LABELS, Label, LabelError, LabelSchema, Platform, label_names, labels_require_docker,
    pick_platform,
};
pub use load::{LoadEnv, LoadedConfig};
pub use model::*;
pub use not_acted_on::{NOT_ACTED_ON, NotActedOn, not_acted_on};
pub use registration::{
    LockError, REGISTRATION_WARNING, Registration, RegistrationError, RegistrationLock,
    registration_exposure, write_atomically, write_atomically_as,
};
pub use secret::Secret;
pub use size::{SizeError, parse_size};

/// `config.example.yaml`, which `generate-config` prints byte for byte.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.yaml");
