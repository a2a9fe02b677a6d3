"""Foreign ultrasound simulator (pymust PSFs, own anatomy and motion): a test-set generator."""
