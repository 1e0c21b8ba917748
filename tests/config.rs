//! Configuration: Rocket.toml profiles, `KOBO_*` overrides, and start-up failing cleanly on bad config, with
//! a message that names the key and where its value came from.

#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error, as figment defines them.

use figment::Jail;
use kobo_exporter::config::{Settings, SourceKind, DEFAULT_PORT};
use kobo_exporter::source;

/// The error that loading and opening gives for the config in the jail.
fn startup_error() -> String {
    let figment = kobo_exporter::config::figment();
    match Settings::from_figment(&figment).and_then(|s| source::open(&s).map(|_| ())) {
        Ok(()) => panic!("the config was accepted"),
        Err(e) => {
            eprintln!("start-up error: {e}");
            e.to_string()
        }
    }
}

fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

/// A SQLite hub with the fixture in the jail's directory.
fn make_hub(jail: &Jail, name: &str) -> std::path::PathBuf {
    let path = jail.directory().join(name);
    let conn = rusqlite::Connection::open(&path).expect("create");
    conn.execute_batch(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testkit/data/schema-sqlite.sql"
        ))
        .expect("schema"),
    )
    .expect("schema");
    path
}

#[test]
fn profiles_and_environment_overrides() {
    Jail::expect_with(|jail| {
        make_hub(jail, "a.sqlite3");
        make_hub(jail, "b.sqlite3");
        std::fs::create_dir(jail.directory().join("workers")).expect("mkdir");
        jail.create_file(
            "Rocket.toml",
            r#"
            [default.kobo]
            url = "sqlite://a.sqlite3"
            [staging.kobo]
            url = "sqlite://b.sqlite3"
            query_timeout = 2.5
            "#,
        )?;
        let figment = kobo_exporter::config::figment();
        let config: rocket::Config = figment.extract().expect("rocket config");
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.address, std::net::Ipv4Addr::LOCALHOST);
        let settings = Settings::from_figment(&figment).expect("default profile");
        assert_eq!(settings.kind, SourceKind::Sqlite);
        assert_eq!(settings.database.url, "sqlite://a.sqlite3");

        jail.set_env("ROCKET_PROFILE", "staging");
        let settings = Settings::from_figment(&kobo_exporter::config::figment()).expect("staging");
        assert_eq!(settings.database.url, "sqlite://b.sqlite3");
        assert_eq!(
            settings.database.query_timeout,
            std::time::Duration::from_millis(2500)
        );

        jail.set_env("KOBO_URL", "sqlite://a.sqlite3");
        jail.set_env("KOBO_WORKER_DIR", "workers");
        jail.set_env("ROCKET_PORT", "9999");
        let figment = kobo_exporter::config::figment();
        let settings = Settings::from_figment(&figment).expect("env");
        assert_eq!(settings.database.url, "sqlite://a.sqlite3");
        assert_eq!(settings.url_origin, "environment variable KOBO_URL");
        assert!(settings.database.worker_dir.is_some());
        assert_eq!(
            figment.extract::<rocket::Config>().expect("rocket").port,
            9999
        );
        source::open(&settings).expect("opens");
        Ok(())
    });
}

#[test]
fn a_missing_url_names_the_key_the_profile_and_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("Rocket.toml", "[default]\nport = 1234\n")?;
        assert_mentions(&startup_error(), &["kobo.url", "Rocket.toml", "KOBO_URL"]);
        Ok(())
    });
}

#[test]
fn an_unknown_scheme_names_the_key_and_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("Rocket.toml", "[default.kobo]\nurl = \"oracle://db/hub\"\n")?;
        assert_mentions(
            &startup_error(),
            &["kobo.url", "Rocket.toml", "default.kobo.url", "oracle"],
        );
        Ok(())
    });
}

#[test]
fn an_unknown_scheme_from_the_environment_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("Rocket.toml", "[default.kobo]\nurl = \"sqlite://x\"\n")?;
        jail.set_env("KOBO_URL", "ftp://hub");
        assert_mentions(&startup_error(), &["kobo.url", "KOBO_URL", "ftp"]);
        Ok(())
    });
}

#[test]
fn a_missing_database_file_is_named_and_not_created() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "Rocket.toml",
            "[default.kobo]\nurl = \"sqlite://missing.sqlite3\"\n",
        )?;
        assert_mentions(
            &startup_error(),
            &["kobo.url", "Rocket.toml", "missing.sqlite3"],
        );
        assert!(
            !jail.directory().join("missing.sqlite3").exists(),
            "the file was created"
        );
        Ok(())
    });
}

#[test]
fn a_database_that_is_not_a_hub_names_the_missing_table() {
    Jail::expect_with(|jail| {
        rusqlite::Connection::open(jail.directory().join("other.db"))
            .and_then(|c| c.execute_batch("CREATE TABLE hub_worker (id integer)"))
            .expect("create");
        jail.create_file(
            "Rocket.toml",
            "[default.kobo]\nurl = \"sqlite://other.db\"\n",
        )?;
        assert_mentions(
            &startup_error(),
            &["kobo.url", "hub_worker_arches", "kobo hub"],
        );
        Ok(())
    });
}

#[test]
fn a_missing_worker_dir_names_the_key_and_the_directory() {
    Jail::expect_with(|jail| {
        make_hub(jail, "hub.sqlite3");
        jail.create_file(
            "Rocket.toml",
            "[default.kobo]\nurl = \"sqlite://hub.sqlite3\"\nworker_dir = \"/nonexistent/kobo/worker\"\n",
        )?;
        assert_mentions(
            &startup_error(),
            &["kobo.worker_dir", "Rocket.toml", "/nonexistent/kobo/worker"],
        );
        Ok(())
    });
}

#[test]
fn wrong_values_name_the_key() {
    let cases = [
        ("max_connections = 0", "kobo.max_connections"),
        ("max_connections = \"two\"", "max_connections"),
        ("query_timeout = -1", "kobo.query_timeout"),
        ("connect_timeout = 0", "kobo.connect_timeout"),
        ("worker_dri = \"/tmp\"", "worker_dri"),
        (
            "password_file = \"/nonexistent/secret\"",
            "kobo.password_file",
        ),
        (
            "basic_auth_users = { prometheus = \"not-a-hash\" }",
            "kobo.basic_auth_users",
        ),
        ("path_prefix = \"metrics\"", "kobo.path_prefix"),
    ];
    for (line, key) in cases {
        Jail::expect_with(|jail| {
            make_hub(jail, "hub.sqlite3");
            jail.create_file(
                "Rocket.toml",
                &format!("[default.kobo]\nurl = \"sqlite://hub.sqlite3\"\n{line}\n"),
            )?;
            let message = startup_error();
            assert_mentions(&message, &[key]);
            assert!(
                message.contains("Rocket.toml"),
                "no file in {message:?} for {line}"
            );
            Ok(())
        });
    }
}

#[test]
fn a_password_file_is_read_and_never_shown() {
    Jail::expect_with(|jail| {
        jail.create_file("secret", "hunter2\n")?;
        jail.create_file(
            "Rocket.toml",
            "[default.kobo]\nurl = \"postgres://kobo:s3cret@127.0.0.1:1/hub\"\npassword_file = \"secret\"\n",
        )?;
        let settings = Settings::from_figment(&kobo_exporter::config::figment()).expect("settings");
        assert_eq!(settings.database.password.as_deref(), Some("hunter2"));
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
        Ok(())
    });
}
