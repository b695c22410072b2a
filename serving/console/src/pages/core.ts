// The pages of the overview, profiles, recommendations, personalization and experiments groups.
import { Experiments } from "./Experiments";
import { Overview } from "./Overview";
import { Personalization } from "./Personalization";
import { Profiles } from "./Profiles";
import { Recommendations } from "./Recommendations";
import type { PageEntry } from "./types";

export const corePages: PageEntry[] = [
  { path: "/overview", group: "Overview", title: "Overview", component: Overview },
  { path: "/profiles", group: "Profiles", title: "Profiles", component: Profiles },
  { path: "/recommendations", group: "Recommendations", title: "Recommendations", component: Recommendations },
  { path: "/personalization", group: "Personalization", title: "Rules and segments", component: Personalization },
  { path: "/experiments", group: "Experiments", title: "Experiments", component: Experiments },
];
