// The pages of the overview, profiles, recommendations, personalization and experiments groups.
import { Overview } from "./Overview";
import type { PageEntry } from "./types";

export const corePages: PageEntry[] = [{ path: "/overview", group: "Overview", title: "Overview", component: Overview }];
