"""Training image generators: the GAN loop (plain and DP), training sets, the job adapter and the
generator folder (save, load, list, sample)."""
