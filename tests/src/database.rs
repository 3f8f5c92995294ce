//! Throwaway PostgreSQL for tests.
//!
//! Without `DATABASE_URL`, the first test of a process starts a private, non-durable
//! cluster (the same `pgcluster` code `pulsar serve` uses) under
//! `target/test-clusters/<pid>`; it dies with the process. Each test gets a fresh
//! database cloned from a template migrated once per process.

use std::path::PathBuf;
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection, PgPool};

struct Server {
    /// URL with `{db}` where the database name goes.
    url_template: String,
    template: String,
    _cluster: Option<pgcluster::Cluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn clusters_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-clusters")
}

/// Removes clusters of test processes that are gone.
fn sweep_stale_clusters(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
        if let Some(pid) = pid {
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash)
            if base[..slash].contains("://") && slash > base.find("://").unwrap_or(0) + 2 =>
        {
            &base[..slash]
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn start_server() -> Server {
    // A thread of its own with its own runtime: tests each run on their own runtime,
    // and nothing made here may be tied to one of them.
    std::thread::spawn(|| {
        let (url_template, cluster) =
            match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
                Some(url) => (replace_database(&url, "{db}"), None),
                None => {
                    let dir = clusters_dir();
                    sweep_stale_clusters(&dir);
                    let mut options =
                        pgcluster::ClusterOptions::new(dir.join(std::process::id().to_string()));
                    options.durable = false;
                    options.max_connections = 300;
                    let cluster = pgcluster::Cluster::start(&options)
                        .expect("start a throwaway PostgreSQL cluster");
                    (
                        replace_database(&cluster.url("postgres"), "{db}"),
                        Some(cluster),
                    )
                }
            };
        let template = format!("pulsar_tpl_{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let admin_url = url_template.replace("{db}", "postgres");
            let mut admin = PgConnection::connect(&admin_url)
                .await
                .expect("connect to the postgres database");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {template}"))
                .execute(&mut admin)
                .await
                .expect("drop an old template");
            sqlx::query(&format!("CREATE DATABASE {template}"))
                .execute(&mut admin)
                .await
                .expect("create the template");
            let pool = PgPool::connect(&url_template.replace("{db}", &template))
                .await
                .expect("connect to the template");
            pulsar_api::db::migrate(&pool)
                .await
                .expect("migrate the template");
            pool.close().await;
        });
        Server {
            url_template,
            template,
            _cluster: cluster,
        }
    })
    .join()
    .expect("test database server")
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = SERVER.get_or_init(start_server);
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server.url_template.replace("{db}", "postgres"))
            .await
            .expect("connect");
        sqlx::query(&format!(
            "CREATE DATABASE {name} TEMPLATE {}",
            server.template
        ))
        .execute(&mut admin)
        .await
        .expect("create the test database");
        let url = server.url_template.replace("{db}", &name);
        let pool = pulsar_api::db::connect(&url, 10)
            .await
            .expect("connect to the test database");
        TestDb { name, url, pool }
    }

    /// The URL of another database on the same server (e.g. for a second process).
    pub fn server_url(database: &str) -> String {
        SERVER
            .get_or_init(start_server)
            .url_template
            .replace("{db}", database)
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            replace_database("postgres://u:p@h:5/a", "b"),
            "postgres://u:p@h:5/b"
        );
        assert_eq!(
            replace_database("postgres://u:p@h:5/a?sslmode=disable", "b"),
            "postgres://u:p@h:5/b?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://u:p@h:5", "b"),
            "postgres://u:p@h:5/b"
        );
    }
}
