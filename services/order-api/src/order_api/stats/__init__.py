"""Statistics for admins and operators."""
