"""Simulated external parties of the programs side: an OpenADR 3.0.1 VTN (programs.sim.vtn)."""
