//! Configuration: Rocket.toml profiles, `KOBO_*` overrides, and start-up failing cleanly on bad config, with
//! a message that names the key and where its value came from.

#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error, as figment defines them.

use figment::Jail;

use crate::common;
use kobo_exporter::config::{DEFAULT_PORT, Settings};
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
    conn.execute_batch(&kobo_testkit::data::read("schema-sqlite.sql"))
        .expect("schema");
    path
}

#[test]
fn profiles_and_environment_overrides() {
    common::jail(|jail| {
        make_hub(jail, "a.sqlite3");
        make_hub(jail, "b.sqlite3");
        std::fs::create_dir(jail.directory().join("workers")).expect("mkdir");
        jail.create_file(
            "Rocket.toml",
            r#"
            [default.kobo]
            url = "sqlite://a.sqlite3"
            [example.kobo]
            url = "sqlite://b.sqlite3"
            query_timeout = 2.5
            "#,
        )?;
        let figment = kobo_exporter::config::figment();
        let config: rocket::Config = figment.extract().expect("rocket config");
        assert_eq!(config.port, DEFAULT_PORT);
        assert_eq!(config.address, std::net::Ipv4Addr::LOCALHOST);
        let settings = Settings::from_figment(&figment).expect("default profile");
        assert_eq!(settings.backend.kind, "sqlite");
        assert_eq!(settings.database.url, "sqlite://a.sqlite3");

        jail.set_env("ROCKET_PROFILE", "example");
        let settings = Settings::from_figment(&kobo_exporter::config::figment()).expect("example");
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
    common::jail(|jail| {
        jail.create_file("Rocket.toml", "[default]\nport = 1234\n")?;
        assert_mentions(&startup_error(), &["kobo.url", "Rocket.toml", "KOBO_URL"]);
        Ok(())
    });
}

#[test]
fn an_unknown_scheme_names_the_key_and_the_file() {
    common::jail(|jail| {
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
    common::jail(|jail| {
        jail.create_file("Rocket.toml", "[default.kobo]\nurl = \"sqlite://x\"\n")?;
        jail.set_env("KOBO_URL", "ftp://hub");
        assert_mentions(&startup_error(), &["kobo.url", "KOBO_URL", "ftp"]);
        Ok(())
    });
}

#[test]
fn a_missing_database_file_is_named_and_not_created() {
    common::jail(|jail| {
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
    common::jail(|jail| {
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
    common::jail(|jail| {
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
        common::jail(|jail| {
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
    common::jail(|jail| {
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

/// Settings for the config in the jail, or the error.
fn settings_or_error() -> Result<Settings, String> {
    Settings::from_figment(&kobo_exporter::config::figment()).map_err(|e| e.to_string())
}

/// A `Rocket.toml` with the SQLite fixture hub and these extra lines in `[default.kobo]`.
fn hub_config(jail: &mut Jail, lines: &str) -> figment::error::Result<()> {
    make_hub(jail, "hub.sqlite3");
    settings_config(jail, lines)
}

/// The same `Rocket.toml` without the hub file, for the checks of `Settings::from_figment` alone.
fn settings_config(jail: &mut Jail, lines: &str) -> figment::error::Result<()> {
    jail.create_file(
        "Rocket.toml",
        &format!("[default.kobo]\nurl = \"sqlite://hub.sqlite3\"\n{lines}\n"),
    )?;
    Ok(())
}

#[test]
fn durations_are_bounded_and_the_message_names_key_source_and_limit() {
    // (key, limit in seconds, 0 allowed)
    let keys = [
        ("connect_timeout", "300", false),
        ("query_timeout", "3600", false),
        ("scrape_timeout", "3600", false),
        ("task_refresh_interval", "86400", true),
        ("min_scrape_interval", "3600", true),
        ("reconnect_backoff_max", "3600", true),
        ("worker_dir_rescan_interval", "86400", true),
    ];
    for (key, limit, zero_allowed) in keys {
        let over = format!("{}.5", limit);
        for value in ["1e19", "1e300", "inf", "-inf", "nan", "-1", over.as_str()] {
            common::jail(|jail| {
                settings_config(jail, &format!("{key} = {value}"))?;
                let message = settings_or_error().expect_err(&format!("{key} = {value} accepted"));
                assert_mentions(
                    &message,
                    &[&format!("kobo.{key}"), "Rocket.toml", "default.kobo", limit],
                );
                Ok(())
            });
        }
        // From the environment: the message names the variable.
        common::jail(|jail| {
            settings_config(jail, "")?;
            jail.set_env(format!("KOBO_{}", key.to_ascii_uppercase()), "1e19");
            let message = settings_or_error().expect_err("1e19 from the environment accepted");
            assert_mentions(
                &message,
                &[&format!("KOBO_{}", key.to_ascii_uppercase()), limit],
            );
            Ok(())
        });
        // The limit itself, and 0 where 0 means "off", are fine.
        common::jail(|jail| {
            settings_config(jail, &format!("{key} = {limit}"))?;
            settings_or_error().unwrap_or_else(|e| panic!("{key} = {limit}: {e}"));
            Ok(())
        });
        common::jail(|jail| {
            settings_config(jail, &format!("{key} = 0"))?;
            assert_eq!(settings_or_error().is_ok(), zero_allowed, "{key} = 0");
            Ok(())
        });
    }
}

#[test]
fn a_huge_scrape_timeout_no_longer_breaks_a_scrape() {
    // The defect: 1e19 passed validation, then every scrape panicked adding it to an Instant.
    common::jail(|jail| {
        hub_config(jail, "scrape_timeout = 3600\nconnect_timeout = 300")?;
        let settings = settings_or_error().expect("the largest values are accepted");
        let source = source::open(&settings).expect("opens");
        let collector = kobo_exporter::collector::HubCollector::new(source, settings.collector);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime
            .block_on(collector.collect_once(kobo_exporter::exposition::Format::Text))
            .expect("collects");
        Ok(())
    });
}

#[test]
fn numeric_keys_are_bounded() {
    let cases = [
        (
            "max_connections = 4294967295",
            "kobo.max_connections",
            "100",
        ),
        ("max_connections = 101", "kobo.max_connections", "100"),
        ("max_connections = 0", "kobo.max_connections", "100"),
        (
            "max_response_bytes = 9223372036854775807",
            "kobo.max_response_bytes",
            "1073741824",
        ),
        ("max_response_bytes = 0", "kobo.max_response_bytes", "1024"),
        (
            "multicall_chunk = 1000000000",
            "kobo.multicall_chunk",
            "100000",
        ),
        ("multicall_chunk = 0", "kobo.multicall_chunk", "100000"),
    ];
    for (line, key, limit) in cases {
        common::jail(|jail| {
            settings_config(jail, line)?;
            let message = settings_or_error().expect_err(line);
            assert_mentions(&message, &[key, "Rocket.toml", limit]);
            Ok(())
        });
    }
    common::jail(|jail| {
        settings_config(jail, "")?;
        jail.set_env("KOBO_MAX_CONNECTIONS", "4294967295");
        let message = settings_or_error().expect_err("4294967295 accepted");
        assert_mentions(
            &message,
            &["kobo.max_connections", "KOBO_MAX_CONNECTIONS", "100"],
        );
        Ok(())
    });
    common::jail(|jail| {
        settings_config(
            jail,
            "max_connections = 100\nmax_response_bytes = 1073741824\nmulticall_chunk = 100000",
        )?;
        let settings = settings_or_error().expect("the limits are accepted");
        assert_eq!(settings.database.max_connections, 100);
        Ok(())
    });
}

#[test]
fn path_prefixes_that_rocket_cannot_mount_are_refused() {
    for prefix in [
        "/a b", "/ü", "//", "/{x}", "/a%20b", "/kobo//", "/a//b", "/<x>", "/a?b", "/a#b", "kobo",
        "/a\\b", "/%zz",
    ] {
        common::jail(|jail| {
            settings_config(jail, &format!("path_prefix = {:?}", prefix))?;
            let message = settings_or_error()
                .err()
                .unwrap_or_else(|| panic!("path_prefix {prefix:?} accepted"));
            assert_mentions(&message, &["kobo.path_prefix", "Rocket.toml"]);
            Ok(())
        });
    }
}

#[test]
fn good_path_prefixes_are_accepted_and_served() {
    for (prefix, mounted) in [
        ("/", "/"),
        ("", "/"),
        ("/kobo", "/kobo"),
        ("/kobo/", "/kobo"),
        ("/a/b-c_d.e~f", "/a/b-c_d.e~f"),
    ] {
        common::jail(|jail| {
            hub_config(jail, &format!("path_prefix = {:?}", prefix))?;
            let figment = kobo_exporter::config::figment();
            let settings = Settings::from_figment(&figment)
                .unwrap_or_else(|e| panic!("path_prefix {prefix:?}: {e}"));
            assert_eq!(settings.path_prefix, mounted);
            // Rocket mounts it (it panicked at launch for the refused ones) and the routes answer.
            let source = source::open(&settings).expect("opens");
            let collector =
                kobo_exporter::collector::HubCollector::new(source, settings.collector.clone());
            let web = kobo_exporter::routes::WebOptions {
                path_prefix: settings.path_prefix.clone(),
                ..Default::default()
            };
            let client = rocket::local::blocking::Client::untracked(
                kobo_exporter::routes::build_with(figment, collector, web),
            )
            .expect("ignites");
            let healthy = format!("{}/-/healthy", mounted.trim_end_matches('/'));
            assert_eq!(
                client.get(healthy.clone()).dispatch().status(),
                rocket::http::Status::Ok,
                "{healthy}"
            );
            Ok(())
        });
    }
}

#[test]
fn empty_path_keys_count_as_unset() {
    common::jail(|jail| {
        hub_config(jail, "")?;
        for variable in [
            "KOBO_WORKER_DIR",
            "KOBO_PASSWORD_FILE",
            "KOBO_CA_FILE",
            "KOBO_BEARER_TOKEN_FILE",
        ] {
            jail.set_env(variable, "");
        }
        let settings = settings_or_error().expect("empty variables are unset");
        assert!(settings.database.worker_dir.is_none());
        assert!(settings.database.password.is_none());
        assert!(settings.database.ca_file.is_none());
        source::open(&settings).expect("opens without a worker directory");
        // The XML-RPC source's own key, read for it.
        jail.set_env("KOBO_URL", "http://hub.invalid/client/");
        let settings = settings_or_error().expect("empty variables are unset");
        let http = settings.own.get::<kobo_backend_xmlrpc::HttpOptions>();
        assert!(
            http.is_some_and(|http| http.bearer_token.is_none()),
            "{http:?}"
        );
        Ok(())
    });
}

#[test]
fn url_schemes_are_case_insensitive_everywhere() {
    for scheme in ["SQLITE", "Sqlite", "sqlite"] {
        common::jail(|jail| {
            make_hub(jail, "hub.sqlite3");
            jail.set_env("KOBO_URL", format!("{scheme}://hub.sqlite3"));
            let settings = settings_or_error().expect("settings");
            assert_eq!(settings.backend.kind, "sqlite");
            source::open(&settings).unwrap_or_else(|e| panic!("{scheme}: {e}"));
            Ok(())
        });
    }
}

#[test]
fn secret_files_are_capped_and_must_be_regular_files() {
    for key in ["password_file", "bearer_token_file"] {
        // A device that never ends: refused at once, not read for gigabytes.
        common::jail(|jail| {
            settings_config(jail, &format!("{key} = \"/dev/zero\""))?;
            let started = std::time::Instant::now();
            let message = settings_or_error().expect_err("/dev/zero accepted");
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
            assert_mentions(
                &message,
                &[&format!("kobo.{key}"), "/dev/zero", "regular file"],
            );
            Ok(())
        });
        // A big file: refused without reading it all; 64 KiB is fine.
        common::jail(|jail| {
            jail.create_file("big", &"x".repeat(64 * 1024 + 1))?;
            settings_config(jail, &format!("{key} = \"big\""))?;
            let message = settings_or_error().expect_err("a big file accepted");
            assert_mentions(&message, &[&format!("kobo.{key}"), "big", "64 KiB"]);
            Ok(())
        });
        common::jail(|jail| {
            jail.create_file("fits", &format!("{}\n", "x".repeat(64 * 1024 - 1)))?;
            settings_config(jail, &format!("{key} = \"fits\""))?;
            settings_or_error().expect("64 KiB is accepted");
            Ok(())
        });
    }
}

#[test]
fn task_flow_keys_are_read_and_bad_values_named() {
    for (line, mentions) in [
        (
            "time_zone = \"Mars/Olympus\"",
            &["kobo.time_zone", "Rocket.toml", "Mars/Olympus"][..],
        ),
        (
            "task_duration_buckets = [10, 5]",
            &["kobo.task_duration_buckets", "Rocket.toml", "increasing"],
        ),
        (
            "task_duration_buckets = []",
            &["kobo.task_duration_buckets", "from 1 to 60"],
        ),
        (
            "task_duration_buckets = [0, 5]",
            &["kobo.task_duration_buckets", "greater than 0"],
        ),
        (
            "task_late_commit_window = 86401",
            &["kobo.task_late_commit_window", "86400"],
        ),
        (
            "max_task_methods = 0",
            &["kobo.max_task_methods", "1 to 10000"],
        ),
    ] {
        common::jail(|jail| {
            settings_config(jail, line)?;
            let message = settings_or_error().expect_err(line);
            assert_mentions(&message, mentions);
            Ok(())
        });
    }
    common::jail(|jail| {
        settings_config(
            jail,
            "time_zone = \"Europe/Prague\"\ntask_late_commit_window = 120\n\
             task_duration_buckets = [1, 2.5, 60]\nmax_task_methods = 7",
        )?;
        let settings = settings_or_error().expect("valid");
        let flow = &settings.database.task_flow;
        assert_eq!(flow.time_zone.name(), "Europe/Prague");
        assert_eq!(flow.late_commit_window, std::time::Duration::from_secs(120));
        assert_eq!(settings.collector.task_duration_buckets, [1.0, 2.5, 60.0]);
        assert_eq!(settings.collector.max_task_methods, 7);
        jail.set_env("KOBO_TIME_ZONE", "America/New_York");
        let settings = settings_or_error().expect("valid");
        assert_eq!(
            settings.database.task_flow.time_zone.name(),
            "America/New_York"
        );
        Ok(())
    });
}

#[test]
fn the_worker_dir_freshness_keys_reach_the_source_options() {
    use kobo_exporter::api::worker_dir::Freshness;
    use std::time::Duration;
    common::jail(|jail| {
        std::fs::create_dir(jail.directory().join("workers")).expect("mkdir");
        settings_config(jail, "worker_dir = \"workers\"")?;
        let dir = settings_or_error().expect("settings").database.worker_dir;
        assert_eq!(dir.map(|d| d.freshness()), Some(Freshness::default()));
        settings_config(
            jail,
            "worker_dir = \"workers\"\nworker_dir_watch = false\nworker_dir_rescan_interval = 30",
        )?;
        let dir = settings_or_error().expect("settings").database.worker_dir;
        assert_eq!(
            dir.map(|d| d.freshness()),
            Some(Freshness {
                watch: false,
                rescan_interval: Duration::from_secs(30),
            })
        );
        jail.set_env("KOBO_WORKER_DIR_WATCH", "maybe");
        let error = settings_or_error().expect_err("not a boolean");
        assert_mentions(
            &error,
            &["WORKER_DIR_WATCH", "`KOBO_` environment", "boolean"],
        );
        Ok(())
    });
}
