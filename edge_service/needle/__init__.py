"""Needle guidance for the injection (case report section 2.4): needle tip and shaft per frame,
distances to the nerve and the calcification, and the procedure built on them."""
