-- name: CreateOrder :one
INSERT INTO orders (id, customer, total_cents) VALUES ($1, $2, $3)
RETURNING id, customer, total_cents, created_at;
