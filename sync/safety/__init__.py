"""Safety for people's data: pause and cancel flags, canaries, dry runs, before-images, rollback."""
