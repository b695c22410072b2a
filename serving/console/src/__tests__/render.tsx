import { AppProvider } from "@shopify/polaris";
import en from "@shopify/polaris/locales/en.json";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";

export function renderWithPolaris(ui: ReactElement) {
  return render(<AppProvider i18n={en}>{ui}</AppProvider>);
}
