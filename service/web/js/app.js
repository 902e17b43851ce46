// Shared, mutable app context: filled in by main.js, read by the views.
// (A plain object rather than imports between views avoids import cycles.)

export const app = {
  stats: null,
  statsReady: null, // Promise<stats | null>
  lastUpload: null, // {file, url, placement, response} of the latest upload search
  openPanel: () => {},
  closePanel: () => {},
  setPathEnd: () => {},
  map: null, // the map view once created
};
