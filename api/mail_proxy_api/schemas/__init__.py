# SPDX-License-Identifier: Apache-2.0
"""HTTP shapes (pydantic) of the documented API; converted to core values at the route."""
