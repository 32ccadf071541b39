package main

// This file has the shape of the code sqlc generates for pgx/v5
// (sql_package: "pgx/v5") from query.sql, written here by hand so that the
// example needs no sqlc. With sqlc, it is the generated package.

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// DBTX is what the queries run on: a *pgxpool.Pool, a *pgx.Conn or a
// pgx.Tx.
type DBTX interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
}

// New returns the queries on db.
func New(db DBTX) *Queries {
	return &Queries{db: db}
}

// Queries are the statements of query.sql.
type Queries struct {
	db DBTX
}

// WithTx returns the queries on tx, so that they are part of that
// transaction.
func (q *Queries) WithTx(tx pgx.Tx) *Queries {
	return &Queries{db: tx}
}

const createOrder = `-- name: CreateOrder :one
INSERT INTO orders (id, customer, total_cents) VALUES ($1, $2, $3)
RETURNING id, customer, total_cents, created_at
`

// CreateOrderParams are the parameters of CreateOrder.
type CreateOrderParams struct {
	ID         string
	Customer   string
	TotalCents int64
}

// CreateOrder inserts an order and returns it.
func (q *Queries) CreateOrder(ctx context.Context, arg CreateOrderParams) (Order, error) {
	row := q.db.QueryRow(ctx, createOrder, arg.ID, arg.Customer, arg.TotalCents)
	var i Order
	err := row.Scan(&i.ID, &i.Customer, &i.TotalCents, &i.CreatedAt)
	return i, err
}

// Order is a row of orders.
type Order struct {
	ID         string
	Customer   string
	TotalCents int64
	CreatedAt  pgtype.Timestamptz
}
