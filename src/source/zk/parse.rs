//! Parsers for ZooKeeper four-letter-word replies.
