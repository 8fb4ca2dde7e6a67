//! tickflow-fuzz integration tests: the saved corpus replayed through every decoder, and a short
//! fuzzing run of every target (fails on any finding).

mod corpus;
