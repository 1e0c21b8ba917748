//! The MySQL/MariaDB source (to be written).
