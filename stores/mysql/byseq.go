package mysqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// Statements that change rows found by a condition run in two steps: a
// plain (non-locking) SELECT finds the sequence numbers, then a statement
// touches those rows by primary key, checking the condition again. A
// single UPDATE or DELETE with the condition could scan the table, and in
// REPEATABLE READ (or in any isolation, for a DELETE) a scan waits for
// every row a business transaction has inserted and not yet committed.

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// selectSeqs returns the seq of the rows that query (a SELECT of seq)
// finds.
func selectSeqs(ctx context.Context, q querier, query string) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var seqs []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	return seqs, rows.Err()
}

// deleteSeqs deletes the rows of seqs for which cond (on alias x) still
// holds, reading no other row: the join starts from the list and reaches
// each row by primary key.
func (s *Store) deleteSeqs(ctx context.Context, seqs []int64, cond string) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, "DELETE x FROM "+seqTable(seqs)+
		" STRAIGHT_JOIN "+s.table+" AS x FORCE INDEX (PRIMARY) ON x.seq = d.seq WHERE "+cond)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// updateSeqs runs "UPDATE table SET set" on the rows of seqs for which cond
// still holds, by primary key.
func (s *Store) updateSeqs(ctx context.Context, seqs []int64, set, cond string) (int64, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, "UPDATE "+s.table+" FORCE INDEX (PRIMARY) SET "+set+
		" WHERE seq IN "+inList(seqs)+" AND "+cond)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// seqTable is a derived table d with one column, seq, holding seqs.
func seqTable(seqs []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, seq := range seqs {
		if i == 0 {
			b.WriteString("SELECT ")
			b.WriteString(strconv.FormatInt(seq, 10))
			b.WriteString(" AS seq")
			continue
		}
		b.WriteString(" UNION ALL SELECT ")
		b.WriteString(strconv.FormatInt(seq, 10))
	}
	b.WriteString(") d")
	return b.String()
}

// inList returns seqs as an SQL list: "(1,2,3)".
func inList(seqs []int64) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, seq := range seqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(seq, 10))
	}
	b.WriteByte(')')
	return b.String()
}
