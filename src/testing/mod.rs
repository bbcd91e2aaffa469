//! Rule unit tests (`zkalert test`).
