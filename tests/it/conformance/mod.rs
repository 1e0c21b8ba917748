//! One conformance suite for every source: the same hubs, loaded into each database on kobo's real schema,
//! must render to the same insta snapshot (`snapshots/conformance__<hub>.snap`).

use crate::common;
use kobo_testkit::CollectExt;
mod hubs;

mod sqlite;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;

use kobo_exporter::api::DataSource;

/// Collects workers and tasks from the source and checks the rendering against the hub's shared snapshot.
pub async fn assert_conforms(hub: &hubs::Hub, source: &dyn DataSource) {
    let snapshot = source
        .collect_tasks()
        .await
        .unwrap_or_else(|e| panic!("{} source, hub {}: {e}", source.kind(), hub.snapshot));
    let text = kobo_exporter::render(&snapshot).expect("render");
    assert!(
        !text.contains("secret-key")
            && !text.contains("aa8d8edacf2beb496dab21a54e9e6fb97dc8500f98aa922388f9a5a87cde565b"),
        "worker_key leaked into the output"
    );
    insta::with_settings!({
        snapshot_path => "../../../snapshots",
        prepend_module_to_snapshot => false,
        description => format!("hub {} rendered from every source", hub.snapshot),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("conformance__{}", hub.snapshot), text);
    });
}

/// Every hub in a new database of backend `B` (kobo's schema for it, the hub's statements, its dropped
/// columns), rendered from `B`'s source; skips when the server is unreachable outside CI.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub async fn on_database<B: crate::backends::Backend>() {
    use kobo_testkit::db::TestDb;
    for hub in hubs::all() {
        let Some(db) = B::Db::create().await else {
            return;
        };
        db.load_schema().await;
        db.execute_each(&hub.statements).await;
        for (table, column) in &hub.drop_columns {
            db.drop_column(table, column).await;
        }
        let options = kobo_exporter::api::DatabaseOptions {
            worker_dir: hub.worker_dir.worker_dir(),
            ..db.options()
        };
        let source =
            B::source(options).unwrap_or_else(|e| panic!("opening hub {}: {e}", hub.snapshot));
        assert_conforms(&hub, source.as_ref()).await;
    }
}
