"""The project's benchmark (`make bench`): SPEC §7's budgets measured in a booted systemd box,
side by side with systemd-nspawn and Debian's overlay-boot 1.6.4. See bench/RESULTS.md."""
