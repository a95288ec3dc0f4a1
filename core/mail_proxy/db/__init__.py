# SPDX-License-Identifier: Apache-2.0
"""Storage: the connection pool, the migration runner and one query module per aggregate.

Each query is a constant next to the typed `async def` that runs it; parameters are keyword-only
and the caller owns the transaction.
"""
