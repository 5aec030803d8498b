// The API docs page (/api/v1/docs): Swagger UI from the package's own files, no
// CDN. It starts here, not in an inline script, so the page runs under the
// dashboard's Content-Security-Policy (script-src 'self').
/* global SwaggerUIBundle */

const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapi,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null, // the default would send the schema to an outside validator
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
