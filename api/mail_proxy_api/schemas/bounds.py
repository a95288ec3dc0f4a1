# SPDX-License-Identifier: Apache-2.0
"""Bounds every schema field shares with the Postgres column that stores it (issue 9).

`integer` columns take INT32, `bigint` ones INT64: a larger value is a 422 at the API, never an
overflow in the database. Text bounds live on each field; NUL characters and numbers beyond
INT64 are refused for every body by `strict_json`.
"""

INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
