/** Cairn's version, printed by `--version` and sent by workers in their hello. */
export const VERSION = "0.1.0";
