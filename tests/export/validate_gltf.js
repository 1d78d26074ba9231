// Validates a .glb with the Khronos glTF validator (npm package `gltf-validator`).
// Usage: node validate_gltf.js FILE.glb
// Prints the report's issue summary as JSON. Exit 0: no errors; 1: errors; 3: the module is missing.
const fs = require("fs");

let validator;
try {
  validator = require("gltf-validator");
} catch (err) {
  console.log("gltf-validator is not installed (npm install gltf-validator, then set NODE_PATH)");
  process.exit(3);
}

const bytes = new Uint8Array(fs.readFileSync(process.argv[2]));
validator
  .validateBytes(bytes)
  .then((report) => {
    console.log(JSON.stringify(report.issues));
    process.exit(report.issues.numErrors === 0 ? 0 : 1);
  })
  .catch((err) => {
    console.log(String(err));
    process.exit(1);
  });
