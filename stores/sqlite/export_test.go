package sqlitestore

// ClaimSQL returns the claim statement, for EXPLAIN QUERY PLAN in tests.
func (s *Store) ClaimSQL() string { return s.q.claim }
