// The pages of the optimization, campaigns, models, analytics and content groups.
import { AttributionPage, InsightsPage, ItemStatsPage, JourneysPage } from "./analytics/Analytics";
import { Campaigns } from "./campaigns/Campaigns";
import { Catalog } from "./content/Catalog";
import { Models } from "./models/Models";
import { Bandits } from "./optimization/Bandits";
import { Strategies } from "./optimization/Strategies";
import type { PageEntry } from "./types";

export const morePages: PageEntry[] = [
  { path: "/optimization/bandits", group: "Optimization", title: "Bandits", component: Bandits },
  { path: "/optimization/strategies", group: "Optimization", title: "Strategies", component: Strategies },
  { path: "/campaigns", group: "Campaigns", title: "Campaigns", component: Campaigns },
  { path: "/models", group: "Models", title: "Models", component: Models },
  { path: "/analytics/attribution", group: "Analytics", title: "Attribution", component: AttributionPage },
  { path: "/analytics/journeys", group: "Analytics", title: "Journeys", component: JourneysPage },
  { path: "/analytics/items", group: "Analytics", title: "Item statistics", component: ItemStatsPage },
  { path: "/analytics/insights", group: "Analytics", title: "Insights", component: InsightsPage },
  { path: "/content", group: "Content", title: "Catalog", component: Catalog },
];
