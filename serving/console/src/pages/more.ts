// pages of the optimization, campaigns, models, analytics and content groups
import type { PageEntry } from "./types";

export const morePages: PageEntry[] = [];
