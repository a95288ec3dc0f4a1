# SPDX-License-Identifier: Apache-2.0
"""Housekeeping jobs shared by every sender: retention purge and the lease rescuer."""
