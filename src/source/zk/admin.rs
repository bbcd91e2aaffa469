//! Parsers for ZooKeeper AdminServer JSON replies.
