//! The configuration lookup order: explicit > environment > user > system >
//! built-in default, with every place in a temporary directory.

use std::path::{Path, PathBuf};

use shipping::config::{Lookup, CONF_FILE_NAME, SYSTEM_CONF_DIR};
use shipping::{ConfigSource, Error, ShippingConfig, DEFAULT_STORAGE_CLASS};

struct Places {
    _root: tempfile::TempDir,
    explicit: PathBuf,
    env: PathBuf,
    user_dir: PathBuf,
    system_dir: PathBuf,
    data_dir: PathBuf,
}

/// Writes a configuration in each place whose notify command names it.
fn places() -> Places {
    let root = tempfile::tempdir().unwrap();
    let places = Places {
        explicit: root.path().join("explicit.toml"),
        env: root.path().join("env.toml"),
        user_dir: root.path().join("user"),
        system_dir: root.path().join("etc"),
        data_dir: root.path().join("data"),
        _root: root,
    };
    std::fs::create_dir_all(&places.user_dir).unwrap();
    std::fs::create_dir_all(&places.system_dir).unwrap();
    write(&places.explicit, "explicit");
    write(&places.env, "env");
    write(&places.user_dir.join(CONF_FILE_NAME), "user");
    write(&places.system_dir.join(CONF_FILE_NAME), "system");
    places
}

fn write(path: &Path, marker: &str) {
    std::fs::write(path, format!("notify = \"{marker}\"\n")).unwrap();
}

fn lookup(places: &Places) -> Lookup {
    Lookup {
        explicit: Some(places.explicit.clone()),
        env_value: Some(places.env.clone().into_os_string()),
        user_config_dir: Some(places.user_dir.clone()),
        system_dir: Some(places.system_dir.clone()),
        data_dir: Some(places.data_dir.clone()),
    }
}

fn marker(config: &ShippingConfig) -> &str {
    config.notify.as_deref().unwrap_or("embedded")
}

#[test]
fn each_place_wins_over_the_later_ones() {
    let places = places();
    let mut lookup = lookup(&places);

    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "explicit");
    assert_eq!(source, ConfigSource::Explicit(places.explicit.clone()));

    lookup.explicit = None;
    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "env");
    assert_eq!(source, ConfigSource::Environment(places.env.clone()));

    lookup.env_value = None;
    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "user");
    assert_eq!(
        source,
        ConfigSource::User(places.user_dir.join(CONF_FILE_NAME))
    );

    std::fs::remove_file(places.user_dir.join(CONF_FILE_NAME)).unwrap();
    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "system");
    assert_eq!(
        source,
        ConfigSource::System(places.system_dir.join(CONF_FILE_NAME))
    );

    std::fs::remove_file(places.system_dir.join(CONF_FILE_NAME)).unwrap();
    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "embedded");
    assert_eq!(source, ConfigSource::Embedded);
    assert_eq!(source.path(), None);
    assert_eq!(source.to_string(), "built-in default");
}

#[test]
fn embedded_default_puts_the_bays_under_the_data_dir() {
    let places = places();
    let lookup = Lookup {
        data_dir: Some(places.data_dir.clone()),
        ..Lookup::default()
    };
    let (config, source) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(source, ConfigSource::Embedded);
    assert_eq!(config.classes.len(), 1);
    let class = config.class(DEFAULT_STORAGE_CLASS).unwrap();
    let bays = places.data_dir.join("bays").join("default");
    assert_eq!(class.outgoing_dir(), bays.join("outgoing"));
    assert_eq!(class.incoming_dir(), bays.join("incoming"));
    assert_eq!(class.return_dir(), bays.join("return"));
    assert_eq!(class.expiry_days, 14);
    assert!(config.routes.is_empty() && config.destinations.is_empty());
    assert_eq!(config, ShippingConfig::embedded(&places.data_dir));
}

#[test]
fn a_file_without_a_default_class_gets_the_embedded_one() {
    let places = places();
    let lookup = Lookup {
        explicit: Some(places.explicit.clone()),
        data_dir: Some(places.data_dir.clone()),
        ..Lookup::default()
    };
    let (config, _) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(
        config.class(DEFAULT_STORAGE_CLASS).unwrap().storage_bay,
        places.data_dir.join("bays").join("default")
    );
}

#[test]
fn a_missing_explicit_or_env_file_is_an_error() {
    let places = places();
    let mut lookup = lookup(&places);
    lookup.explicit = Some(places.data_dir.join("nope.toml"));
    let err = ShippingConfig::load_with(&lookup).unwrap_err();
    assert!(
        matches!(&err, Error::ConfigMissing { path, .. } if path.ends_with("nope.toml")),
        "{err}"
    );
    assert!(err.to_string().contains("-shipconf"), "{err}");

    lookup.explicit = None;
    lookup.env_value = Some(places.data_dir.join("gone.toml").into_os_string());
    let err = ShippingConfig::load_with(&lookup).unwrap_err();
    assert!(
        err.to_string().contains("SYNCREPLICA_SHIPPING_CONF"),
        "{err}"
    );
    assert!(err.to_string().contains("gone.toml"), "{err}");

    // An empty variable counts as unset.
    lookup.env_value = Some("".into());
    let (config, _) = ShippingConfig::load_with(&lookup).unwrap();
    assert_eq!(marker(&config), "user");
}

#[test]
fn a_bad_file_stops_the_lookup() {
    let places = places();
    let mut lookup = lookup(&places);
    lookup.explicit = None;
    lookup.env_value = None;
    let user_file = places.user_dir.join(CONF_FILE_NAME);
    std::fs::write(&user_file, "notify = \"x\"\nbogus = 1\n").unwrap();
    let err = ShippingConfig::load_with(&lookup).unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains(&user_file.display().to_string()), "{shown}");
    assert!(shown.contains("line 2"), "{shown}");
    assert!(shown.contains("bogus"), "{shown}");
}

#[test]
fn no_file_and_no_data_dir_is_an_error() {
    let lookup = Lookup::default();
    assert!(matches!(
        ShippingConfig::load_with(&lookup),
        Err(Error::NoDataDir)
    ));
}

#[test]
fn from_environment_keeps_the_explicit_path_and_the_system_dir() {
    let lookup = Lookup::from_environment(Some(Path::new("/x/shipping.toml")));
    assert_eq!(
        lookup.explicit.as_deref(),
        Some(Path::new("/x/shipping.toml"))
    );
    assert_eq!(
        lookup.system_dir.as_deref(),
        Some(Path::new(SYSTEM_CONF_DIR))
    );
}
